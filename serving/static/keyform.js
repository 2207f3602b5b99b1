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
})();
