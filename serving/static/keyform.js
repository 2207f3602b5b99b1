/* The API key of a page of this service: asked for on the page, kept in this browser tab only
   (sessionStorage, shared by the service's pages), sent only to this service. Every page loads this
   script before its own and wires its key form (#key-form, #api-key, #key-forget, #key-status). */
(() => {
  "use strict";
  const STORAGE = "triage.apiKey";
  const $ = (id) => document.getElementById(id);

  window.TriageKey = {
    get: () => sessionStorage.getItem(STORAGE) || "",
    /* use: what the page does with a new key; forget: what it does before the key is forgotten;
       inUse: the status shown when a key is entered (null: the page says it itself). */
    wire({ use, forget = () => {}, inUse = "Key in use." }) {
      $("key-form").addEventListener("submit", (event) => {
        event.preventDefault();
        sessionStorage.setItem(STORAGE, $("api-key").value.trim());
        $("api-key").value = "";
        if (inUse !== null) $("key-status").textContent = inUse;
        use();
      });
      $("key-forget").addEventListener("click", () => {
        forget();
        sessionStorage.removeItem(STORAGE);
        $("key-status").textContent = "Key forgotten.";
      });
    },
  };

  /* A risk or threshold as the service writes it in words (`serving.engine.in_words`): three decimals,
     but three significant digits under 0.01 (a pass threshold of 0.00044 is not "0.000") and as many
     nines as a value just under 1 has, then one digit (0.99995 is not the block threshold 1.000). */
  window.TriageFormat = {
    risk(value, none = "unknown") {
      if (value === null || value === undefined) return none;
      const v = Number(value);
      if (!Number.isFinite(v) || v === 0) return v.toFixed(3);
      if (v > 0.999 && v < 1) return v.toFixed(Math.min(15, 1 - Math.floor(Math.log10(1 - v))));
      if (Math.abs(v) >= 0.01) return v.toFixed(3);
      return String(Number(v.toPrecision(3)));
    },
  };
})();
