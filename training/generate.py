"""Built-in synthetic review history: realistic, seeded and vectorised (1M rows in seconds).

`generate(rows, seed, start, months)` returns `(reviews, oracle)`; `write_dataset` writes them to
`reviews.parquet` and, separately, `oracle.parquet`, which training never reads, plus `catalogue.csv`:
`catalogue()`, the known prohibited and restricted products with their aliases (the marketplace copy
is configs/catalogue.csv, written by `write_catalogue`).

The generative story:

1. Merchants have a heavy-tailed (Pareto) listing volume, a home category and market, a join date and
   a latent quality `q`. About 6% are repeat offenders: `q` shifted up, schemes 7x as often, newer
   accounts, fewer certificates. So a merchant's past rejection rate predicts the next outcome.
2. Listings are created uniformly over `[start, start + months)` after their merchant joined, sorted by
   time. A listing may carry a *scheme* that shows in its features: counterfeit (a luxury brand word and
   a price far under that brand's norm, sometimes "mirror quality" wording), prohibited item (a
   prohibited term in title and description), misleading health claim (health, beauty, pharmacy...)
   or off-platform payment ("Message me on WhatsApp", an "other" violation). Regulated categories
   (pharmacy, health_supplements, tobacco_accessories) may lack a certificate. Benign listings use the
   risky words harmlessly too: genuine luxury at its normal price, "ivory color", "detox tea blend",
   "compatible with Apple devices".
3. Drift: over the last `DRIFT_MONTHS` months schemes grow, the base rate rises slightly and violators
   switch to obfuscated spellings (`OBFUSCATED_TERMS`: "R0lex", "sw1tchblade", "c.u.r.e.s cancer")
   that a fixed term list misses.
4. Outcome: each violation type k has a probability `p_k = sigmoid(signal_k + shared)`, where `signal_k`
   is a function of the listing's features and `shared = q[merchant] + ambiguity + market, drift,
   tenure and image effects`; `ambiguity ~ N(0, AMBIGUITY_SD)` is a per-listing latent term that no
   feature reveals. A true violation occurs with `p = 1 - prod_k(1 - p_k)` and its reason is drawn with
   weights `p_k`. The reviewer then flips the outcome with probability
   `f(p) = REVIEWER_FLIP_FLOOR + REVIEWER_FLIP_BORDERLINE * 4p(1-p)`: reviewers err mostly on borderline
   listings, rarely on clear-cut ones (a wrongly rejected listing gets reason "other").
5. Re-posts: `REPOST_SHARE` of the rows (about one rejection in six) list a rejected listing again,
   1 hour to 6 weeks (log-uniform) after its verdict, by the same merchant or, for `LINKED_SHARE`
   (more for repeat offenders), from a second account of the same seller: a fresh merchant id that
   joined after the rejection, with the seller's latents. Repeat offenders and schemes come back more
   often. A re-post is the same product (category, market, scheme, luxury claim, hint, lookalike,
   certificate, images), possibly edited (`REPOST_EDITS`): title reworded (another modifier, or the
   word order), spelling (plain to obfuscated, or the other obfuscation: more often in the drift
   months, as the trick spreads), price changed 2-20% (mostly down), description reordered or one
   category sentence swapped. `HEAVY_SHARE` get every edit; about one in ten is a verbatim copy.
   Room is made by dropping `round(REPOST_SHARE * rows)` rows drawn uniformly and blind to everything
   (a thinning independent of every draw, so the kept rows' oracle is untouched); the originals are a
   sample of the other rejected listings, weighted by features and the merchant's offender status.

The oracle of an ordinary (not re-posted) listing: `true_risk = p + f(p) * (1 - 2p)` is exactly
P(label = 1 | the listing's features (creation time included), its merchant's latent quality `q`, the
listing's latent ambiguity term), reviewer noise included, and `label ~ Bernoulli(true_risk)`. It does
not condition on the label draw itself. No model sees `q` or the ambiguity term, so the oracle bounds
what any model trained on `reviews` can reach: the least review workload at a given recall.

`limit_risk` is `true_risk` integrated over the ambiguity term, `E[true_risk | features, q]`: the
ambiguity is drawn independently per listing and leaves no trace in any column a scoring model sees
(it moves `review_seconds` and the label, both known only after review), so even a perfect model of the
features cannot recover it; `limit_risk` is the reachable limit. The merchant's `q` stays conditioned
on: it is shared by all of the merchant's listings, so their review history reveals it (only partly for
merchants with little history, where `limit_risk` is still optimistic). Everything else in `p_k` is a
function of observable columns: category, market, creation time, tenure, images, certificate, price
(and through it the discount) and the scheme, luxury claim, "mirror quality" hint and lookalike
sentence, all of which show in title, description or brand. The integral over `ambiguity ~ N(0,
AMBIGUITY_SD^2)`, which shifts every type's logit alike, is a `LIMIT_NODES`-point Gauss-Hermite
quadrature (within 1e-8 of 100 nodes), vectorised over rows.

Per reason k in REASONS, `true_risk_<k>` = P(label = 1 and reason = k | same conditioning):
`p (1 - f(p)) p_k / sum_j(p_j)` for a confirmed violation, plus the wrongful rejections
`(1 - p) f(p)` for "other". They sum to `true_risk`; `limit_risk_<k>`, the same integrated over the
ambiguity term, sum to `limit_risk` (both up to float rounding). A reason absent from a listing's
signals (say counterfeit without a luxury brand) has risk exactly 0 there.

The oracle of a re-post. Same product, same truth: a re-post carries its original's true violation V
and type K; a fresh reviewer flips its verdict with `f(p)`, `p` the original's violation probability
(the same product, as borderline). The original's verdict, rejected with recorded reason R, was known
before the re-post was created. With p_k, p, f the original's (given its features, q and ambiguity):
  P(R = k)                   = A_k + [k = other] B,  A_k = p (1 - f) p_k / sum_j(p_j),  B = (1 - p) f
  P(R = k, re-post rejected) = A_k (1 - f) + [k = other] B f
(A_k: a confirmed violation of type k; B: a wrongful rejection, always recorded as "other"). `true_risk`
of the re-post is their ratio, P(label = 1 | features, latents, the original's verdict): `1 - f` when R
is not "other" (only an "other" rejection can be wrong), and all of it is on reason R (a wrongful
re-post rejection is "other", like R). Which rejected listings come back depends on their verdicts,
features, merchants' offender status and independent draws, never on V or the ambiguity term, so it
leaves this posterior unchanged; the re-post's own edits, price, merchant, tenure and time are
independent draws given the original, so they carry no further information.
`limit_risk` integrates the ambiguity term `a` (shared by the original and its re-post) out against its
posterior given everything observable about the original: its verdict, and its `review_seconds`, which
depends on `a` through `p` (likelihood `l(a)`: the log-normal mass of the recorded 0.1 s interval, or
of everything under it at the 5 s floor) and is independent of V given `a` and the label. By Bayes,
  limit_risk = integral phi(a) l(a) P(R = k, re-post rejected | a) da / integral phi(a) l(a) P(R = k | a) da,
by Gauss-Hermite quadrature with 2 * LIMIT_NODES nodes; `limit_risk_k` is the same on reason R, 0 elsewhere.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import NamedTuple, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from scipy.special import ndtr

# Reviewers err mostly on borderline listings: a verdict is the wrong way round with probability
# REVIEWER_FLIP_FLOOR + REVIEWER_FLIP_BORDERLINE * 4p(1-p), p the listing's violation probability
# (about 2% of all verdicts on this data, but rarely on clear-cut listings).
REVIEWER_FLIP_FLOOR = 0.0003
REVIEWER_FLIP_BORDERLINE = 0.10
AMBIGUITY_SD = 0.8  # sd of the per-listing latent logit term no feature reveals
OFFENDER_SHARE = 0.06
DRIFT_MONTHS = 2
REASONS = ("other", "counterfeit", "prohibited_item", "misleading_health_claim", "regulated_no_certificate")
_OTHER = REASONS.index("other")  # also the reason a wrongful rejection is recorded with
LIMIT_NODES = 20  # Gauss-Hermite nodes integrating out the ambiguity: within 1e-9 of 200 nodes
MARKETS = ("US", "UK", "DE", "FR", "BR", "IN")
_MARKET_SHARE = np.array([0.35, 0.12, 0.12, 0.10, 0.13, 0.18])
_MARKET_LOGIT = np.array([0.0, -0.15, -0.3, -0.2, 0.35, 0.4])
_NS_PER_DAY = 86_400 * 10**9
_TEXT = pa.large_string()
_T = TypeVar("_T", bound=tuple)  # a NamedTuple of per-row arrays

# fmt: off
# Risky terms and the obfuscated spellings violators drift to.
OBFUSCATIONS: dict[str, tuple[str, str]] = {
    "Gucci": ("Guc.ci", "Gucc1"), "Prada": ("Pr4da", "Pr.ada"), "Balenciaga": ("Balenc1aga", "Bal3nciaga"),
    "Versace": ("V3rsace", "Vers.ace"), "Louis Vuitton": ("L0uis Vuitton", "Louis Vu1tton"),
    "Chanel": ("Chan3l", "C.hanel"), "Hermes": ("Herm3s", "H3rmes"), "Dior": ("D1or", "Di.or"),
    "Rolex": ("R0lex", "R.o.l.e.x"), "Omega": ("0mega", "Om3ga"), "Cartier": ("Cart1er", "Cart.ier"),
    "Patek Philippe": ("Pat3k Philippe", "Patek Ph1lippe"), "Tiffany": ("T1ffany", "Tiff.any"),
    "Bvlgari": ("Bvlg4ri", "Bvl.gari"), "La Mer": ("L4 Mer", "La M3r"), "Apple": ("App1e", "Appl3"),
    "Bose": ("B0se", "Bo.se"), "Beats": ("B3ats", "Be4ts"),
    "switchblade": ("sw1tchblade", "sw!tch blade"), "brass knuckles": ("br4ss knuckles", "brass knuckl3s"),
    "butterfly knife": ("butterfly kn1fe", "b.utterfly knife"), "stun gun": ("stun g.u.n", "5tun gun"),
    "ivory carving": ("1vory carving", "iv0ry carving"),
    "tiger skin rug": ("t1ger skin rug", "tiger sk1n rug"),
    "rhino horn figurine": ("rh1no horn figurine", "rhino h0rn figurine"),
    "real ivory handle": ("real 1vory handle", "real iv.ory handle"),
    "real ivory pendant": ("real 1vory pendant", "real iv0ry pendant"),
    "tortoiseshell bangle": ("t0rtoiseshell bangle", "tortoise.shell bangle"),
    "leopard fur coat": ("le0pard fur coat", "leopard f.u.r coat"),
    "crocodile skin boots": ("cr0codile skin boots", "crocodile sk1n boots"),
    "signal jammer": ("s1gnal jammer", "signal j4mmer"), "gps jammer": ("gps j@mmer", "g.p.s jammer"),
    "radar jammer": ("radar j4mmer", "r4dar jammer"),
    "police siren kit": ("p0lice siren kit", "police s1ren kit"),
    "emissions defeat device": ("emissions def3at device", "em1ssions defeat device"),
    "oxycodone tablets": ("0xycodone tablets", "oxyc0done tabs"),
    "tramadol no prescription": ("tr4madol no prescription", "trama.dol no rx"),
    "realistic replica gun": ("realistic repl1ca gun", "realistic replica g.u.n"),
    "meth pipe": ("m3th pipe", "meth p1pe"),
    "untaxed cigarettes carton": ("untax3d cigarettes carton", "untaxed c1garettes carton"),
    "cures cancer": ("c.u.r.e.s cancer", "kures canc3r"),
    "miracle weight loss": ("m1racle weight loss", "miracle w8 l0ss"),
    "detox guaranteed": ("det0x guaranteed", "d3tox guarant33d"),
    "reverses diabetes": ("rev3rses diabetes", "r.e.v.e.r.s.e.s diabetes"),
    "lose 10kg in one week": ("l0se 10kg in one week", "lose 10kg in 1 w33k"),
    "kills all viruses": ("k1lls all viruses", "kills all v1ruses"),
}
OBFUSCATED_TERMS: tuple[str, ...] = tuple(v for pair in OBFUSCATIONS.values() for v in pair)
HEALTH_CLAIMS = ("cures cancer", "miracle weight loss", "detox guaranteed", "reverses diabetes",
                 "lose 10kg in one week", "kills all viruses")


class _Category(NamedTuple):
    """One category: its economics, its vocabularies ("|"-separated) and its violation mix."""

    share: float  # share of listings
    price: float  # price norm of an ordinary listing
    seconds: float  # median review handling time
    base: float  # logit of an "other" policy violation
    brands: str
    products: str
    modifiers: str
    phrases: str  # description sentences
    luxury: str = ""  # luxury brand words counterfeiters abuse
    luxury_mult: float = 1.0  # genuine luxury price norm / category price norm
    genuine_rate: float = 0.0  # genuine luxury listings
    counterfeit_rate: float = 0.0
    prohibited: str = ""
    prohibited_rate: float = 0.0
    claim_rate: float = 0.0
    regulated: float = 0.0  # logit push of "no certificate"; 0 = not regulated
    certified: float = 0.02  # rate of has_certificate
    lookalikes: str = ""  # harmless sentences that contain risky words


CATEGORIES: dict[str, _Category] = {
    "electronics": _Category(
        0.14, 120, 70, -3.7, "Samsung|Sony|Anker|Xiaomi|Logitech|JBL",
        "wireless earbuds|bluetooth speaker|phone charger|USB-C cable|smart watch|power bank|gaming mouse",
        "2025 model|fast charging|black|white|with case|long battery life",
        "Crystal clear sound and deep bass.|Charges fully in about two hours.|Works with most phones and "
        "tablets.|Bluetooth 5.3 with a stable connection.|Includes charging cable and user manual.|"
        "Lightweight design for travel and commuting.|Supports fast charging up to 20W.",
        luxury="Apple|Bose|Beats", luxury_mult=2.5, genuine_rate=0.10, counterfeit_rate=0.018,
        prohibited="signal jammer|gps jammer", prohibited_rate=0.006,
        lookalikes="Fully compatible with Apple devices.|Fits Bose and Beats charging cases.|"
        "Perfect for jam sessions with friends."),
    "fashion": _Category(
        0.14, 45, 60, -3.7, "Zara|Levi's|Uniqlo|H&M|Nike|Adidas",
        "leather belt|denim jacket|silk scarf|sneakers|hoodie|sunglasses|wool coat|crossbody bag",
        "size M|unisex|slim fit|new with tags|black|vintage",
        "Soft fabric that feels great all day.|Machine washable at thirty degrees.|Please check the size "
        "chart before ordering.|Classic cut that never goes out of style.|Made from breathable cotton blend.",
        luxury="Gucci|Prada|Balenciaga|Versace", luxury_mult=8, genuine_rate=0.04, counterfeit_rate=0.03,
        prohibited="leopard fur coat|crocodile skin boots", prohibited_rate=0.006, certified=0.01,
        lookalikes="Elegant ivory color with gold buttons.|Faux fur collar, no animal products used.|"
        "Leopard print pattern on soft cotton."),
    "luxury_bags": _Category(
        0.03, 350, 220, -3.3, "Coach|Michael Kors|Kate Spade|Fossil|Tumi",
        "handbag|tote bag|shoulder bag|wallet|clutch|backpack|card holder",
        "genuine leather|monogram canvas|with dust bag|limited edition|pre-owned|black",
        "Spacious interior with zip pocket.|Adjustable strap for shoulder or crossbody.|Comes with the "
        "original dust bag.|Minor signs of wear on the corners.|Hand stitched leather in excellent shape.",
        luxury="Louis Vuitton|Gucci|Chanel|Hermes|Prada|Dior", luxury_mult=4, genuine_rate=0.30,
        counterfeit_rate=0.09, prohibited="real ivory handle", prohibited_rate=0.0045, certified=0.05,
        lookalikes="Soft ivory leather with gold hardware.|Crocodile embossed calf leather, not real skin."),
    "watches": _Category(
        0.04, 150, 180, -3.4, "Casio|Seiko|Citizen|Timex|Fossil|Garmin",
        "diver watch|chronograph|automatic watch|dress watch|field watch|GMT watch",
        "stainless steel|sapphire crystal|42mm|with box and papers|leather strap|date display",
        "Water resistant to one hundred meters.|Automatic movement with smooth sweeping hands.|Scratch "
        "resistant crystal and luminous dial.|Keeps accurate time, recently serviced.|Strap fits wrists "
        "up to 20 cm.",
        luxury="Rolex|Omega|Cartier|Patek Philippe", luxury_mult=40, genuine_rate=0.20,
        counterfeit_rate=0.09, certified=0.05,
        lookalikes="Watch box fits Rolex and Omega sizes.|Replacement strap compatible with Omega lugs."),
    "health_supplements": _Category(
        0.06, 30, 150, -3.3, "Nature Made|Optimum Nutrition|Garden of Life|NOW Foods|Centrum",
        "vitamin D3 capsules|whey protein powder|omega-3 fish oil|collagen peptides|probiotic capsules|"
        "multivitamin gummies|magnesium tablets", "60 count|90 servings|sugar free|vegan|1000mg|unflavored",
        "Take two capsules daily with food.|Third party tested for purity.|Store in a cool dry place.|"
        "Non GMO and gluten free formula.|Consult your doctor before use.",
        claim_rate=0.075, regulated=4.5, certified=0.7,
        lookalikes="Gentle detox tea blend for the evening.|Supports healthy weight management with "
        "exercise.|A miracle of flavor in every scoop."),
    "pharmacy": _Category(
        0.03, 25, 240, -3.4, "Tylenol|Advil|Bayer|Pfizer|Kirkland",
        "pain relief tablets|allergy relief|cough syrup|antacid chewables|nasal spray|hydrocortisone cream|"
        "blood pressure monitor", "100 count|extra strength|24 hour|non drowsy|family size",
        "Read the label and follow directions.|Sealed packaging with long expiry date.|For temporary "
        "relief of minor aches.|Keep out of reach of children.|Pharmacist approved everyday essential.",
        prohibited="oxycodone tablets|tramadol no prescription", prohibited_rate=0.009, claim_rate=0.03,
        regulated=6.0, certified=0.88),
    "toys": _Category(
        0.08, 25, 55, -3.9, "LEGO|Mattel|Hasbro|Melissa & Doug|Fisher-Price",
        "building blocks set|plush bear|remote control car|jigsaw puzzle|doll house|board game|action figure",
        "ages 3+|educational|with batteries|gift box|STEM|1000 pieces",
        "Safe non toxic materials for kids.|Great gift for birthdays and holidays.|Encourages creativity and "
        "problem solving.|Batteries included, ready to play.|Easy to assemble in minutes.",
        prohibited="realistic replica gun", prohibited_rate=0.0045,
        lookalikes="Bright orange toy water gun for the pool.|Ivory white plush bunny with soft ears."),
    "home": _Category(
        0.12, 60, 50, -4.1, "IKEA|KitchenAid|Dyson|OXO|Philips",
        "ceramic vase|kitchen knife set|throw pillow|table lamp|cast iron skillet|area rug|wall clock",
        "set of 2|modern|handmade|oak wood|dishwasher safe|large",
        "Adds a cozy touch to any room.|Easy to clean with a damp cloth.|Sturdy build that lasts for "
        "years.|Fits perfectly in small apartments.|Neutral colors match any decor.",
        prohibited="ivory carving|tiger skin rug|rhino horn figurine", prohibited_rate=0.009,
        lookalikes="Painted in a warm ivory color.|Solid brass door knob included.|Faux tiger print, "
        "no animal products."),
    "beauty": _Category(
        0.08, 25, 80, -3.6, "L'Oreal|Maybelline|Nivea|CeraVe|The Ordinary|Olay",
        "face serum|moisturizer|lipstick|mascara|sunscreen SPF 50|hair oil|eye cream",
        "30ml|travel size|fragrance free|for dry skin|long lasting|new sealed",
        "Lightweight texture absorbs quickly.|Dermatologist tested for sensitive skin.|Apply morning and "
        "evening on clean skin.|Cruelty free and vegan formula.|Leaves skin soft and hydrated.",
        luxury="Chanel|Dior|La Mer", luxury_mult=5, genuine_rate=0.05, counterfeit_rate=0.0225,
        claim_rate=0.03, lookalikes="Gentle detox clay mask for oily skin.|Miracle glow primer loved by "
        "makeup artists."),
    "sports": _Category(
        0.07, 55, 60, -3.9, "Nike|Adidas|Wilson|Under Armour|Decathlon",
        "yoga mat|dumbbell set|running shoes|tennis racket|camping tent|hunting knife|fishing rod",
        "adjustable|lightweight|waterproof|for beginners|pro series|pair",
        "Built for daily training sessions.|Non slip grip for safety.|Folds flat for easy storage.|Tested "
        "by athletes in tough conditions.|Comes with a carry bag.",
        prohibited="switchblade|brass knuckles|butterfly knife|stun gun", prohibited_rate=0.015,
        claim_rate=0.006, lookalikes="Brass whistle for coaches and referees.|Padded knuckle guards "
        "for boxing gloves.|Practice butterfly stroke with these fins."),
    "automotive": _Category(
        0.05, 80, 75, -3.7, "Bosch|Michelin|Castrol|Garmin|Thule",
        "dash cam|car phone mount|LED headlight bulbs|floor mats|tire inflator|seat covers|jump starter",
        "universal fit|12V|for SUV|heavy duty|plug and play|2 pack",
        "Installs in minutes without tools.|Fits most cars, trucks and SUVs.|Weatherproof and built to "
        "last.|Clear instructions included in the box.|Bright output with low power draw.",
        prohibited="radar jammer|police siren kit|emissions defeat device", prohibited_rate=0.012,
        lookalikes="Mount for your legal radar detector.|Siren red paint touch up pen."),
    "books": _Category(
        0.06, 15, 35, -4.9, "Penguin|HarperCollins|Vintage|O'Reilly|Scholastic",
        "paperback novel|hardcover cookbook|picture book|programming guide|history book|poetry collection",
        "first edition|like new|signed copy|box set|illustrated|2nd edition",
        "Pages are clean with no markings.|A gripping story from start to finish.|Ships in protective "
        "packaging.|Perfect for readers of all ages.|Slight wear on the cover.",
        lookalikes="A novel about the ivory trade and its end.|History of the switchblade in cinema."),
    "jewelry": _Category(
        0.04, 80, 140, -3.4, "Pandora|Swarovski|Fossil|Kendra Scott",
        "necklace|bracelet|ring|earrings|pendant|charm|anklet",
        "sterling silver|18k gold plated|adjustable|gift boxed|handmade|with gemstone",
        "Hypoallergenic and nickel free.|Comes in an elegant gift box.|Polished finish that stays bright.|"
        "Chain length can be adjusted.|A timeless piece for every day.",
        luxury="Cartier|Tiffany|Bvlgari", luxury_mult=20, genuine_rate=0.10, counterfeit_rate=0.045,
        prohibited="real ivory pendant|tortoiseshell bangle", prohibited_rate=0.012, certified=0.15,
        lookalikes="Ivory white freshwater pearls.|Brass chain with a warm gold tone."),
    "pet_supplies": _Category(
        0.04, 30, 45, -4.2, "Purina|Kong|Pedigree|Royal Canin|Blue Buffalo",
        "dog chew toy|cat scratching post|pet bed|dry dog food|cat litter|aquarium filter|leash and collar",
        "for large dogs|for cats|washable|grain free|10 lb bag|durable",
        "Vet recommended for daily use.|Durable design for heavy chewers.|Machine washable cover.|"
        "Keeps your pet busy and happy.|Made with real chicken.", claim_rate=0.006),
    "tobacco_accessories": _Category(
        0.02, 35, 120, -2.8, "Zippo|RAW|Clipper|OCB|Zig-Zag",
        "rolling papers|lighter|herb grinder|ashtray|tobacco pipe|humidor|cigar cutter",
        "pack of 50|windproof|refillable|4 piece|cedar lined|stainless",
        "For adult customers only.|Slow burning and smooth.|Fits standard cigar sizes.|Refill with "
        "standard butane.|Compact enough for any pocket.",
        prohibited="meth pipe|untaxed cigarettes carton", prohibited_rate=0.03, regulated=2.5,
        certified=0.6),
}
CATEGORY_NAMES = tuple(CATEGORIES)
LUXURY_BRANDS = tuple(dict.fromkeys(b for c in CATEGORIES.values() for b in c.luxury.split("|") if b))
PROHIBITED_TERMS = tuple(dict.fromkeys(t for c in CATEGORIES.values() for t in c.prohibited.split("|") if t))

_GENERIC = ("Ships within 24 hours.|Brand new in original packaging.|Free returns within 30 days.|"
            "Buy with confidence from a trusted seller.|Fast and careful shipping.|Message us with any "
            "questions.|Stock is limited, order today.")
_PROHIBITED_PREFIX = "Authentic|Rare|Vintage|Brand new|Hard to find"
_PROHIBITED_SUFFIX = "for collectors.|ships discreetly.|no questions asked.|in great condition."
_CLAIM_PREFIX = "This formula|Our natural blend|Clinically proven,|Doctors hate it:"
_CLAIM_SUFFIX = "in days.|naturally.|without side effects.|or your money back."
_OFF_PLATFORM_TEXT = ("Message me on WhatsApp for a better price.|Pay by bank transfer and save 10%.|"
                      "Contact me on Telegram before you order.|Cash payments off the site get a discount.")
_HINTS = "1:1 mirror quality.|Same as the original, top grade.|AAA replica quality, looks real."
_AUTHENTIC = "100% authentic, receipt included.|Genuine item, bought in boutique."
# fmt: on
_COUNTERFEIT, _PROHIBITED, _CLAIM, _OFF_PLATFORM, _NO_SCHEME = 0, 1, 2, 3, 4
_OFF_PLATFORM_RATE = 0.006  # "pay me outside the marketplace": an "other" violation, any category


class _Pool(NamedTuple):
    """Phrases grouped by category in one Arrow array: spelling variants follow at `stride`, then null."""

    values: pa.Array
    start: np.ndarray
    size: np.ndarray
    stride: int
    null: int


def _pool(groups: list[str], variants: bool = False) -> _Pool:
    lists = [g.split("|") if g else [] for g in groups]
    flat = [t for ts in lists for t in ts]
    size = np.array([len(ts) for ts in lists])
    start = np.concatenate([[0], np.cumsum(size)[:-1]])
    spellings = [OBFUSCATIONS[t][i] for i in (0, 1) for t in flat] if variants else []
    texts = flat + spellings
    return _Pool(pa.array([*texts, None], type=_TEXT), start, size, len(flat), len(texts))


@cache
def _pools() -> dict[str, _Pool]:
    cats = CATEGORIES.values()
    per_category = ("brands", "products", "modifiers", "phrases", "lookalikes")
    pools = {name: _pool([getattr(c, name) for c in cats]) for name in per_category}
    pools["luxury"] = _pool([c.luxury for c in cats], variants=True)
    pools["prohibited"] = _pool([c.prohibited for c in cats], variants=True)
    pools["claims"] = _pool(["|".join(HEALTH_CLAIMS)], variants=True)
    for name, text in [
        ("generic", _GENERIC),
        ("hints", _HINTS),
        ("authentic", _AUTHENTIC),
        ("off_platform", _OFF_PLATFORM_TEXT),
        ("prohibited_prefix", _PROHIBITED_PREFIX),
        ("prohibited_suffix", _PROHIBITED_SUFFIX),
        ("claim_prefix", _CLAIM_PREFIX),
        ("claim_suffix", _CLAIM_SUFFIX),
    ]:
        pools[name] = _pool([text])
    return pools


def _pick(rng: np.random.Generator, pool: _Pool, group: np.ndarray, mask: np.ndarray | bool = True) -> np.ndarray:
    """Index of a random phrase of each row's group, or of null where `mask` is off or the group is empty."""
    idx = pool.start[group] + (rng.random(len(group)) * pool.size[group]).astype(np.int64)
    return np.where(mask & (pool.size[group] > 0), idx, pool.null)


def _spell(pool: _Pool, idx: np.ndarray, variant: np.ndarray) -> np.ndarray:
    return np.where(idx == pool.null, idx, idx + variant * pool.stride)


def _text(pool: _Pool, idx: np.ndarray) -> pa.Array:
    return pool.values.take(idx)


def _join(*parts: pa.Array, nulls: str = "skip") -> pa.Array:
    # Arrow drops rows whose parts are all null under "skip": callers keep one part non-null.
    return pc.binary_join_element_wise(*parts, pa.scalar(" ", _TEXT), null_handling=nulls)


def _field(name: str) -> np.ndarray:
    return np.array([getattr(c, name) for c in CATEGORIES.values()])


def _expit(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


class _Merchants(NamedTuple):
    offender: np.ndarray
    quality: np.ndarray  # latent logit shift: never in the reviews
    category: np.ndarray
    market: np.ndarray
    joined: np.ndarray  # seconds since start (negative: joined before)
    ids: pa.Array


def _ids(prefix: str, n: int, width: int) -> pa.Array:
    digits = pc.cast(pa.array(np.arange(1, n + 1)), _TEXT)
    padded = pc.utf8_lpad(digits, width=max(width, len(str(n))), padding="0")
    return pc.binary_join_element_wise(pa.scalar(prefix, _TEXT), padded, pa.scalar("", _TEXT))


def _merchants(rng: np.random.Generator, n: int, span: float) -> _Merchants:
    offender = rng.random(n) < OFFENDER_SHARE
    quality = rng.normal(0.0, 0.4, n) + 1.8 * offender
    shares = _field("share")
    category = rng.choice(len(shares), n, p=shares / shares.sum())
    market = rng.choice(len(MARKETS), n, p=_MARKET_SHARE)
    joins_in_window = rng.random(n) < np.where(offender, 0.5, 0.2)
    age = rng.exponential(np.where(offender, 150.0, 700.0), n) * 86_400
    joined = np.floor(np.where(joins_in_window, rng.random(n) * 0.95 * span, -age))
    return _Merchants(offender, quality, category, market, joined, _ids("M", n, 6))


def _listings(rng: np.random.Generator, m: _Merchants, rows: int, span: float) -> tuple[np.ndarray, np.ndarray]:
    """Each row's merchant (heavy-tailed volumes) and creation second, sorted by time."""
    active = (span - np.maximum(m.joined, 0)) / span
    volume = (rng.pareto(2.0, len(active)) + 1.0) * active
    merchant = rng.choice(len(active), rows, p=volume / volume.sum())
    lo = np.maximum(m.joined[merchant], 0)
    created = np.minimum(np.floor(lo + rng.random(rows) * (span - lo)), np.ceil(span) - 1)
    order = np.argsort(created, kind="stable")
    return merchant[order], created[order]


def _place(rng: np.random.Generator, home: np.ndarray, stay: float, shares: np.ndarray) -> np.ndarray:
    """The merchant's home category/market with probability `stay`, else a draw by overall share."""
    other = rng.choice(len(shares), len(home), p=shares / shares.sum())
    return np.where(rng.random(len(home)) < stay, home, other)


def _schemes(rng: np.random.Generator, cat: np.ndarray, offender: np.ndarray, drift: np.ndarray) -> np.ndarray:
    boost = np.where(offender, 7.0, 1.0) * (1.0 + 0.4 * drift)
    off_platform = np.full(len(CATEGORIES), _OFF_PLATFORM_RATE)
    rates = np.stack([_field("counterfeit_rate"), _field("prohibited_rate"), _field("claim_rate"), off_platform], 1)
    cum = np.cumsum(rates[cat] * boost[:, None], axis=1)
    return (rng.random(len(cat))[:, None] >= cum).sum(axis=1)


class _Rows(NamedTuple):
    """Per-listing arrays, in time order; `merchant` indexes `_Merchants`."""

    merchant: np.ndarray
    created: np.ndarray  # seconds since start
    category: np.ndarray
    market: np.ndarray
    drift: np.ndarray  # 0 before the drift window, rising to 1 at the end
    scheme: np.ndarray
    luxury: np.ndarray  # a luxury brand is claimed (genuine or counterfeit)
    genuine: np.ndarray
    variant: np.ndarray  # 0 plain spelling, 1-2 obfuscated
    hint: np.ndarray  # "mirror quality" wording
    lookalike: np.ndarray  # a harmless sentence with risky words
    price: np.ndarray
    discount: np.ndarray  # log(luxury price norm / price), clipped to [0, 4]
    certificate: np.ndarray
    images: np.ndarray
    tenure: np.ndarray  # merchant tenure in days


def _rows(rng: np.random.Generator, m: _Merchants, rows: int, span: float, drift_start: float) -> _Rows:
    merchant, created = _listings(rng, m, rows, span)
    category = _place(rng, m.category[merchant], 0.7, _field("share"))
    market = _place(rng, m.market[merchant], 0.85, _MARKET_SHARE)
    drift = _drift(created, span, drift_start)
    offender = m.offender[merchant]
    scheme = _schemes(rng, category, offender, drift)
    genuine = (scheme == _NO_SCHEME) & (rng.random(rows) < _field("genuine_rate")[category])
    luxury = genuine | (scheme == _COUNTERFEIT)
    obfuscated = (scheme != _NO_SCHEME) & (rng.random(rows) < 0.01 + 0.6 * drift)
    variant = np.where(obfuscated, rng.integers(1, 3, rows), 0)
    hint = (scheme == _COUNTERFEIT) & (rng.random(rows) < 0.35)
    has_lookalikes = _pools()["lookalikes"].size[category] > 0
    lookalike = (scheme == _NO_SCHEME) & ~genuine & has_lookalikes & (rng.random(rows) < 0.04)
    price, discount = _prices(rng, category, scheme, genuine)
    certificate = _certificates(rng, category, scheme, genuine, offender)
    images = np.clip(rng.poisson(np.where(scheme == _NO_SCHEME, np.where(genuine, 6.5, 5.0), 2.5)), 0, 12)
    tenure = np.round((created - m.joined[merchant]) / 86_400, 2)
    return _Rows(
        merchant,
        created,
        category,
        market,
        drift,
        scheme,
        luxury,
        genuine,
        variant,
        hint,
        lookalike,
        price,
        discount,
        certificate,
        images.astype(np.int64),
        tenure,
    )


def _prices(
    rng: np.random.Generator, cat: np.ndarray, scheme: np.ndarray, genuine: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Log-normal prices around the category norm; luxury around its own norm, counterfeits far under."""
    norm = _field("price")[cat]
    luxury_norm = norm * _field("luxury_mult")[cat]
    counterfeit = scheme == _COUNTERFEIT
    centre = np.select(
        [genuine, counterfeit, scheme == _PROHIBITED], [luxury_norm, 0.12 * luxury_norm, 1.3 * norm], norm
    )
    spread = np.select([genuine, counterfeit], [0.35, 0.7], 0.5)
    price = np.maximum(np.round(centre * np.exp(spread * rng.standard_normal(len(cat))), 2), 0.5)
    return price, _discount(cat, genuine | counterfeit, price)


def _discount(cat: np.ndarray, luxury: np.ndarray, price: np.ndarray) -> np.ndarray:
    luxury_norm = _field("price")[cat] * _field("luxury_mult")[cat]
    return np.where(luxury, np.clip(np.log(luxury_norm / price), 0.0, 4.0), 0.0)


def _drift(created: np.ndarray, span: float, drift_start: float) -> np.ndarray:
    return np.clip((created - drift_start) / (span - drift_start), 0.0, 1.0)


def _certificates(
    rng: np.random.Generator, cat: np.ndarray, scheme: np.ndarray, genuine: np.ndarray, offender: np.ndarray
) -> np.ndarray:
    rate = _field("certified")[cat] * np.where(offender, 0.55, 1.0) * np.where(scheme == _CLAIM, 0.6, 1.0)
    rate = np.select([genuine, scheme == _COUNTERFEIT], [0.5, 0.08], rate)
    return (rng.random(len(cat)) < rate).astype(np.int64)


def _violation_logits(r: _Rows, m: _Merchants, ambiguity: np.ndarray) -> np.ndarray:
    """Logit of P(violation of each type in REASONS) given features and latents: shape (rows, len(REASONS)).

    -inf where the listing lacks that type's signal (only "other" can occur on every listing).
    """
    shared = (
        m.quality[r.merchant]
        + ambiguity
        + _MARKET_LOGIT[r.market]
        + 0.25 * r.drift
        + 0.5
        - 0.18 * np.log1p(r.tenure / 30)
        + 0.5 * (r.images == 0)
        - 0.05 * r.images
    )
    regulated = _field("regulated")[r.category]
    no_signal = np.full(len(shared), -np.inf)
    logits = [
        _field("base")[r.category] - 1.0 + 0.4 * r.lookalike + 4.0 * (r.scheme == _OFF_PLATFORM),
        np.where(r.luxury, -4.5 + 2.8 * r.discount + 1.5 * r.hint - 1.2 * r.certificate, no_signal),
        np.where(r.scheme == _PROHIBITED, 2.0, no_signal),
        np.where(r.scheme == _CLAIM, 1.5, no_signal),
        np.where((regulated > 0) & (r.certificate == 0), regulated - 6.5, no_signal),
    ]
    return np.stack(logits, axis=1) + shared[:, None]


class _Outcome(NamedTuple):
    label: np.ndarray
    reason: np.ndarray  # index into ("none", *REASONS)
    violation_prob: np.ndarray
    true_risk: np.ndarray
    violation: np.ndarray  # the true violation, before the reviewer's verdict


def _outcome(rng: np.random.Generator, probs: np.ndarray) -> _Outcome:
    """A true violation with P = 1 - prod(1 - p_k), reason drawn by weight p_k; reviewers flip a few."""
    p = 1.0 - np.prod(1.0 - probs, axis=1)
    flip = reviewer_flip_probability(p)
    violation = rng.random(len(p)) < p
    label = violation ^ (rng.random(len(p)) < flip)
    cum = np.cumsum(probs, axis=1)
    kind = np.minimum(((rng.random(len(p)) * cum[:, -1])[:, None] >= cum).sum(axis=1), len(REASONS) - 1)
    reason = np.where(label, np.where(violation, kind + 1, _OTHER + 1), 0)
    return _Outcome(label.astype(np.int64), reason, p, p + flip * (1 - 2 * p), violation)


def _label_risks(probs: list[np.ndarray], at: list[np.ndarray | slice], rows: int) -> list[np.ndarray]:
    """Per reason k, P(label = 1 with reason k) as `_outcome` draws it, on the rows `at[k]`.

    `probs[k]` is the violation probability p_k of reason k on the rows `at[k]` (0 elsewhere; "other"
    covers every row). A violation (P = p = 1 - prod(1 - p_k)) that the reviewer confirms (1 - f(p))
    takes reason k with weight p_k / sum(p_k); a wrongful rejection ((1 - p) f(p)) is recorded as
    "other". So the per-reason risks sum to p + f(p)(1 - 2p), the true risk.
    """
    survive, total = np.ones(rows), np.zeros(rows)
    for p_k, rows_k in zip(probs, at, strict=True):
        survive[rows_k] *= 1.0 - p_k
        total[rows_k] += p_k
    violation = 1.0 - survive
    flip = reviewer_flip_probability(violation)
    confirmed = violation * (1.0 - flip) / total
    per_reason = [confirmed[rows_k] * p_k for p_k, rows_k in zip(probs, at, strict=True)]
    per_reason[_OTHER] += (1.0 - violation) * flip
    return per_reason


def _reason_rows(logits: np.ndarray) -> list[np.ndarray | slice]:
    """Per reason, the rows whose logit is finite (every row: a slice), the only rows it can occur on."""
    finite = np.isfinite(logits)
    if not finite[:, _OTHER].all():
        raise AssertionError('every listing can be rejected as "other"')
    return [slice(None) if column.all() else np.flatnonzero(column) for column in finite.T]


def _dense(per_reason: list[np.ndarray], at: list[np.ndarray | slice], rows: int) -> list[np.ndarray]:
    columns = [np.zeros(rows) for _ in per_reason]
    for column, values, rows_k in zip(columns, per_reason, at, strict=True):
        column[rows_k] = values
    return columns


def _limit_risks(logits: np.ndarray, at: list[np.ndarray | slice]) -> list[np.ndarray]:
    """`_label_risks` integrated over ambiguity ~ N(0, AMBIGUITY_SD^2); `logits` taken at ambiguity 0.

    Gauss-Hermite quadrature with LIMIT_NODES nodes. A node shifts every logit by the same amount, i.e.
    scales every odds-against (1 - p_k) / p_k by one factor: one multiplication per value, no exp.
    """
    nodes, weights = np.polynomial.hermite_e.hermegauss(LIMIT_NODES)  # weight function exp(-x^2 / 2)
    odds_against = [np.exp(-logits[rows_k, k]) for k, rows_k in enumerate(at)]
    integral = [np.zeros(len(odds)) for odds in odds_against]
    for node, weight in zip(nodes, weights / np.sqrt(2.0 * np.pi), strict=True):
        factor = np.exp(-AMBIGUITY_SD * node)
        per_reason = _label_risks([1.0 / (1.0 + odds * factor) for odds in odds_against], at, len(logits))
        for total, part in zip(integral, per_reason, strict=True):
            part *= weight
            total += part
    return _dense(integral, at, len(logits))


def _risks(true_per_reason: list[np.ndarray], limit_per_reason: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The oracle's risk columns: true_risk and limit_risk, then the same per reason."""
    return {
        "true_risk": np.sum(true_per_reason, axis=0),
        "limit_risk": np.sum(limit_per_reason, axis=0),
        **{f"true_risk_{k}": c for k, c in zip(REASONS, true_per_reason, strict=True)},
        **{f"limit_risk_{k}": c for k, c in zip(REASONS, limit_per_reason, strict=True)},
    }


def _oracle(logits: np.ndarray, ambiguity: np.ndarray, outcome: _Outcome) -> dict[str, np.ndarray]:
    """The risk columns of ordinary listings (see the module docstring)."""
    rows, at = len(logits), _reason_rows(logits)
    true_per_reason = _dense(_label_risks([_expit(logits[r, k]) for k, r in enumerate(at)], at, rows), at, rows)
    limit_per_reason = _limit_risks(logits - ambiguity[:, None], at)
    return {**_risks(true_per_reason, limit_per_reason), "true_risk": outcome.true_risk}


def reviewer_flip_probability(p: np.ndarray) -> np.ndarray:
    """Chance the reviewer's verdict is wrong, given the listing's violation probability p."""
    return REVIEWER_FLIP_FLOOR + REVIEWER_FLIP_BORDERLINE * 4.0 * p * (1.0 - p)


def _review_seconds(rng: np.random.Generator, cat: np.ndarray, o: _Outcome) -> np.ndarray:
    """Category handling time, longer for ambiguous (p near 1/2) and rejected listings."""
    noise = np.exp(_SECONDS_SD * rng.standard_normal(len(cat)))
    seconds = _median_seconds(cat, o.violation_prob, o.label) * noise
    return np.maximum(np.round(seconds, 1), _MIN_SECONDS)


_SECONDS_SD = 0.45  # log-normal spread of review_seconds
_MIN_SECONDS = 5.0


def _median_seconds(cat: np.ndarray, p: np.ndarray, label: np.ndarray) -> np.ndarray:
    return _field("seconds")[cat] * (1.0 + 1.5 * 4.0 * p * (1.0 - p)) * np.where(label == 1, 1.3, 1.0)


def _review_delay(rng: np.random.Generator, rows: int) -> np.ndarray:
    """Seconds from creation to the verdict: log-normal around 10 hours, within [15 min, 4 days]."""
    return np.round(3600 * np.clip(np.exp(np.log(10.0) + 0.9 * rng.standard_normal(rows)), 0.25, 96.0))


class _Wording(NamedTuple):
    """Each row's phrase choices, as indices into `_pools()` (the pool's `null` where absent).

    Text is assembled from these and `_Rows.variant` (the spelling), so a re-post can copy its
    original's wording and change a few choices (`_repost_wording`).
    """

    luxury: np.ndarray  # plain-spelling index of the row's risky term, if any
    prohibited: np.ndarray
    claims: np.ndarray
    brand: np.ndarray  # an ordinary (non-luxury) brand
    brand_shown: np.ndarray  # a luxury brand also fills the brand column (never when obfuscated)
    in_title: np.ndarray  # the prohibited term or claim shows in the title as well
    product: np.ndarray
    modifier: np.ndarray
    modifier_first: np.ndarray  # title "brand modifier item" rather than "brand item modifier"
    first: np.ndarray  # the category sentences
    second: np.ndarray
    third: np.ndarray
    lookalike: np.ndarray
    generic: np.ndarray
    prohibited_prefix: np.ndarray
    prohibited_suffix: np.ndarray
    claim_prefix: np.ndarray
    claim_suffix: np.ndarray
    off_platform: np.ndarray
    hint: np.ndarray
    authentic: np.ndarray
    order: np.ndarray  # description sentence order: 0 "A R B X", 1 "R A B X", 2 "A B R X" (see _descriptions)


_MODIFIER_FIRST_SHARE = 0.25
_ORDER_SHARE = np.array([0.7, 0.15, 0.15])


def _wording(rng: np.random.Generator, r: _Rows) -> _Wording:
    pools, cat, n = _pools(), r.category, len(r.category)
    zero = np.zeros(n, dtype=np.int64)
    branded = ~r.luxury & (r.scheme != _PROHIBITED) & (rng.random(n) < 0.75)
    phrases = pools["phrases"]
    start, size = phrases.start[cat], phrases.size[cat]  # every category has >= 3 phrases
    first = (rng.random(n) * size).astype(np.int64)
    step2 = 1 + (rng.random(n) * (size - 1)).astype(np.int64)
    step3 = 1 + (rng.random(n) * (size - 2)).astype(np.int64)
    step3 += step3 >= step2  # three distinct sentences
    counterfeit = (r.scheme == _COUNTERFEIT) & ~r.hint
    authentic = (r.genuine & (rng.random(n) < 0.5)) | (counterfeit & (rng.random(n) < 0.4))
    return _Wording(
        luxury=_pick(rng, pools["luxury"], cat, r.luxury),
        prohibited=_pick(rng, pools["prohibited"], cat, r.scheme == _PROHIBITED),
        claims=_pick(rng, pools["claims"], zero, r.scheme == _CLAIM),
        brand=_pick(rng, pools["brands"], cat, branded),
        brand_shown=rng.random(n) < np.where(r.genuine, 0.9, 0.5),
        in_title=rng.random(n) < 0.6,
        product=_pick(rng, pools["products"], cat),
        modifier=_pick(rng, pools["modifiers"], cat),
        modifier_first=rng.random(n) < _MODIFIER_FIRST_SHARE,
        first=start + first,
        second=start + (first + step2) % size,
        third=np.where(rng.random(n) < 0.4, start + (first + step3) % size, phrases.null),
        lookalike=_pick(rng, pools["lookalikes"], cat, r.lookalike),
        generic=_pick(rng, pools["generic"], zero),
        prohibited_prefix=_pick(rng, pools["prohibited_prefix"], zero, r.scheme == _PROHIBITED),
        prohibited_suffix=_pick(rng, pools["prohibited_suffix"], zero, r.scheme == _PROHIBITED),
        claim_prefix=_pick(rng, pools["claim_prefix"], zero, r.scheme == _CLAIM),
        claim_suffix=_pick(rng, pools["claim_suffix"], zero, r.scheme == _CLAIM),
        off_platform=_pick(rng, pools["off_platform"], zero, r.scheme == _OFF_PLATFORM),
        hint=_pick(rng, pools["hints"], zero, r.hint),
        authentic=_pick(rng, pools["authentic"], zero, authentic),
        order=rng.choice(len(_ORDER_SHARE), n, p=_ORDER_SHARE),
    )


def _titles_and_brands(r: _Rows, w: _Wording) -> tuple[pa.Array, pa.Array]:
    """Title "[brand] item modifier [- claim]" (or modifier first); the brand column is "" when no brand is given."""
    pools = _pools()
    brand = _text(pools["brands"], w.brand)
    luxury = pools["luxury"]
    luxury_field = _text(luxury, np.where(w.brand_shown & (r.variant == 0), w.luxury, luxury.null))
    title_brand = pc.coalesce(_text(luxury, _spell(luxury, w.luxury, r.variant)), brand)
    prohibited = pools["prohibited"]
    term = _text(prohibited, np.where(w.in_title, _spell(prohibited, w.prohibited, r.variant), prohibited.null))
    item = pc.coalesce(term, _text(pools["products"], w.product))
    modifier = _text(pools["modifiers"], w.modifier)
    claims = pools["claims"]
    claim = _text(claims, np.where(w.in_title, _spell(claims, w.claims, r.variant), claims.null))
    dash = pa.scalar("-", _TEXT)
    modifier_first = pa.array(w.modifier_first)
    title = _join(
        title_brand,
        pc.if_else(modifier_first, modifier, item),
        pc.if_else(modifier_first, item, modifier),
        _join(dash, claim, nulls="emit_null"),
    )
    return title, pc.coalesce(luxury_field, brand, pa.scalar("", _TEXT))


def _risk_sentence(r: _Rows, w: _Wording) -> pa.Array:
    """The description's risky sentence (prohibited term, claim, luxury wording), null for most rows."""
    pools = _pools()
    sentences = []
    for name, affix, term in [("prohibited", "prohibited", w.prohibited), ("claims", "claim", w.claims)]:
        pool = pools[name]
        parts = (
            _text(pools[f"{affix}_prefix"], getattr(w, f"{affix}_prefix")),
            _text(pool, _spell(pool, term, r.variant)),
            _text(pools[f"{affix}_suffix"], getattr(w, f"{affix}_suffix")),
        )
        sentences.append(_join(*parts, nulls="emit_null"))
    sentences.append(_text(pools["off_platform"], w.off_platform))
    sentences.append(_text(pools["hints"], w.hint))
    sentences.append(_text(pools["authentic"], w.authentic))
    return pc.coalesce(*sentences)


def _descriptions(r: _Rows, w: _Wording) -> pa.Array:
    """Category sentence A, risky or generic sentence R, category sentence B, optional X, in `w.order`."""
    pools = _pools()
    phrases = pools["phrases"]
    a, b = _text(phrases, w.first), _text(phrases, w.second)
    risky = pc.coalesce(_risk_sentence(r, w), _text(pools["generic"], w.generic))
    extra = pc.coalesce(_text(pools["lookalikes"], w.lookalike), _text(phrases, w.third))
    risk_first, risk_third = pa.array(w.order == 1), pa.array(w.order == 2)
    return _join(
        pc.if_else(risk_first, risky, a),
        pc.if_else(risk_first, a, pc.if_else(risk_third, b, risky)),
        pc.if_else(risk_third, risky, b),
        extra,
    )


# Re-posts: a rejected listing listed again (see the module docstring).
REPOST_SHARE = 0.01  # share of rows that re-post a rejected listing: about 1 in 6 rejections comes back
REPOST_GAP_DAYS = (1 / 24, 42.0)  # a re-post follows its rejection by 1 hour to 6 weeks (log-uniform)
LINKED_SHARE = (0.2, 0.5)  # share re-posted from a second account: ordinary sellers, repeat offenders
HEAVY_SHARE = 0.15  # re-posts edited every way at once (the hard ones)
REPOST_EDITS = ("title", "spelling", "price", "description")
_EDIT_RATE = {"title": 0.5, "spelling": 0.2, "price": 0.5, "description": 0.4}  # each, for a light re-post
_SPELLING_DRIFT = 0.4  # re-posters obfuscate more as the trick spreads: + this x drift
_PRICE_CHANGE = (0.02, 0.2)  # relative, mostly down


class _Reposts(NamedTuple):
    original: np.ndarray  # index of each re-post's original among the generated rows
    replaces: np.ndarray  # the rows (drawn blind to everything) the re-posts take the place of
    rows: _Rows
    wording: _Wording
    merchants: _Merchants  # every merchant, second accounts appended
    linked: np.ndarray  # re-posted from a second account of the original's seller
    edits: np.ndarray  # bit i set: REPOST_EDITS[i] was changed


def _room(rng: np.random.Generator, rows: int) -> np.ndarray:
    """The rows re-posts may take the place of (to keep `rows`): drawn uniformly, blind to everything."""
    return rng.choice(rows, round(REPOST_SHARE * rows), replace=False)


def _originals(
    rng: np.random.Generator,
    r: _Rows,
    m: _Merchants,
    label: np.ndarray,
    reviewed: np.ndarray,
    span: float,
    replaces: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which rejected listings come back, when, and which of `replaces` their re-posts take the place of.

    The originals are a weighted sample without replacement (Efraimidis-Spirakis keys) of the rejected
    listings outside `replaces` whose re-post falls in the window. Weights favour repeat offenders and
    schemes, never the latents of the listing.
    """
    rows = len(label)
    low, high = np.log(np.array(REPOST_GAP_DAYS) * 86_400)
    created = np.floor(reviewed + np.exp(rng.uniform(low, high, rows)))
    eligible = (label == 1) & (created <= np.ceil(span) - 1)
    eligible[replaces] = False
    weight = np.where(m.offender[r.merchant], 3.0, 1.0) * np.where(r.scheme != _NO_SCHEME, 2.0, 1.0)
    key = np.where(eligible, np.log1p(-rng.random(rows)) / weight, -np.inf)
    count = min(len(replaces), int(eligible.sum()))
    original = np.sort(np.argpartition(-key, count - 1)[:count]) if count else np.zeros(0, dtype=np.int64)
    return original, created[original], replaces[:count]


def _second_accounts(
    rng: np.random.Generator, m: _Merchants, seller: np.ndarray, created: np.ndarray, since: np.ndarray
) -> _Merchants:
    """A fresh merchant per linked re-post: the seller's latents, joined after the rejection, days ago."""
    joined = np.floor(created - rng.random(len(seller)) * np.minimum(created - since, 14 * 86_400.0))
    count = len(m.offender) + len(seller)
    return _Merchants(
        np.concatenate([m.offender, m.offender[seller]]),
        np.concatenate([m.quality, m.quality[seller]]),
        np.concatenate([m.category, m.category[seller]]),
        np.concatenate([m.market, m.market[seller]]),
        np.concatenate([m.joined, joined]),
        _ids("M", count, 6),
    )


def _edits(rng: np.random.Generator, scheme: np.ndarray, drift: np.ndarray) -> np.ndarray:
    """Bit mask over REPOST_EDITS per re-post: HEAVY_SHARE get every edit, the rest each by _EDIT_RATE."""
    heavy = rng.random(len(scheme)) < HEAVY_SHARE
    has_term = np.isin(scheme, [_COUNTERFEIT, _PROHIBITED, _CLAIM])  # a word whose spelling can change
    edits = np.zeros(len(heavy), dtype=np.int64)
    for bit, name in enumerate(REPOST_EDITS):
        rate = _EDIT_RATE[name] + (_SPELLING_DRIFT * drift if name == "spelling" else 0.0)
        edit = heavy | (rng.random(len(heavy)) < rate)
        edits |= (edit & has_term if name == "spelling" else edit).astype(np.int64) << bit
    return np.where(heavy, edits | 1 << len(REPOST_EDITS), edits)  # one bit past the edits: heavy


def _has(edits: np.ndarray, name: str) -> np.ndarray:
    return (edits >> REPOST_EDITS.index(name) & 1).astype(bool)


def _repost_rows(
    rng: np.random.Generator, r: _Rows, merchant: np.ndarray, created: np.ndarray, edits: np.ndarray
) -> _Rows:
    """The original's product: same features, except time, merchant, and the edited spelling and price."""
    spelling, price = _has(edits, "spelling"), _has(edits, "price")
    variant = np.where(spelling, np.where(r.variant == 0, rng.integers(1, 3, len(created)), 3 - r.variant), r.variant)
    sign = np.where(rng.random(len(created)) < 0.7, -1.0, 1.0)
    change = 1.0 + sign * rng.uniform(*_PRICE_CHANGE, len(created))
    new_price = np.where(price, np.maximum(np.round(r.price * change, 2), 0.5), r.price)
    return r._replace(
        merchant=merchant,
        created=created,
        variant=variant,
        price=new_price,
        discount=_discount(r.category, r.luxury, new_price),
    )


def _repost_wording(rng: np.random.Generator, w: _Wording, cat: np.ndarray, edits: np.ndarray) -> _Wording:
    """The original's wording, reworded: title (modifier, word order), description (order, a sentence)."""
    n, heavy = len(cat), edits >> len(REPOST_EDITS) & 1 == 1
    title, description = _has(edits, "title"), _has(edits, "description")
    word_order = title & (heavy | (rng.random(n) < 0.5))
    modifiers = _pools()["modifiers"]
    start, size = modifiers.start[cat], modifiers.size[cat]
    step = 1 + (rng.random(n) * (size - 1)).astype(np.int64)
    new_modifier = start + (w.modifier - start + step) % size
    reorder = description & (heavy | (rng.random(n) < 0.5))
    swap = description & (heavy | ~reorder)
    return w._replace(
        modifier=np.where(title & (heavy | ~word_order), new_modifier, w.modifier),
        modifier_first=w.modifier_first ^ word_order,
        order=np.where(reorder, (w.order + rng.integers(1, len(_ORDER_SHARE), n)) % len(_ORDER_SHARE), w.order),
        first=np.where(swap, _unused_sentence(rng, w, cat), w.first),
    )


def _unused_sentence(rng: np.random.Generator, w: _Wording, cat: np.ndarray) -> np.ndarray:
    """A category sentence the description does not hold yet (every category has >= 5)."""
    phrases = _pools()["phrases"]
    used = np.stack([w.first, w.second, w.third], axis=1)
    fresh, todo = w.first.copy(), np.ones(len(cat), dtype=bool)
    while todo.any():
        at = np.flatnonzero(todo)
        fresh[at] = phrases.start[cat[at]] + (rng.random(len(at)) * phrases.size[cat[at]]).astype(np.int64)
        todo[at] = (used[at] == fresh[at, None]).any(axis=1)
    return fresh


def _reposts(
    rng: np.random.Generator,
    r: _Rows,
    m: _Merchants,
    w: _Wording,
    label: np.ndarray,
    reviewed: np.ndarray,
    window: tuple[float, float],
    room: np.ndarray,
) -> _Reposts:
    span, drift_start = window
    original, created, replaces = _originals(rng, r, m, label, reviewed, span, room)
    base = _take(r, original)
    offender = m.offender[base.merchant]
    linked = rng.random(len(original)) < np.where(offender, LINKED_SHARE[1], LINKED_SHARE[0])
    merchants = _second_accounts(rng, m, base.merchant[linked], created[linked], reviewed[original][linked])
    merchant = base.merchant.copy()
    merchant[linked] = len(m.offender) + np.arange(linked.sum())
    drift = _drift(created, span, drift_start)
    edits = _edits(rng, base.scheme, drift)
    rows = _repost_rows(rng, base, merchant, created, edits)
    rows = rows._replace(
        drift=drift,
        tenure=np.round((created - merchants.joined[merchant]) / 86_400, 2),
    )
    wording = _repost_wording(rng, _take(w, original), base.category, edits)
    return _Reposts(original, replaces, rows, wording, merchants, linked, edits & ((1 << len(REPOST_EDITS)) - 1))


def _repost_outcome(rng: np.random.Generator, probs: np.ndarray, original: _Outcome) -> _Outcome:
    """Same product, same truth: the original's violation and reason; a fresh reviewer flips a few."""
    p = 1.0 - np.prod(1.0 - probs, axis=1)
    label = original.violation ^ (rng.random(len(p)) < reviewer_flip_probability(p))
    verdict, confirmed = _verdict_risks(probs, original.reason)
    return _Outcome(
        label.astype(np.int64), np.where(label, original.reason, 0), p, confirmed / verdict, original.violation
    )


def _verdict_risks(probs: np.ndarray, reason: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """P(the original's verdict) and P(that verdict and a rejected re-post), given the latents.

    `probs` are the original's p_k, `reason` its recorded reason (index into ("none", *REASONS)).
    """
    p = 1.0 - np.prod(1.0 - probs, axis=1)
    flip = reviewer_flip_probability(p)
    share = probs[np.arange(len(p)), reason - 1] / probs.sum(axis=1)
    confirmed = p * (1.0 - flip) * share
    wrongful = np.where(reason - 1 == _OTHER, (1.0 - p) * flip, 0.0)
    return confirmed + wrongful, confirmed * (1.0 - flip) + wrongful * flip


def _seconds_likelihood(
    seconds: np.ndarray, cat: np.ndarray, p: np.ndarray, label: np.ndarray | None = None
) -> np.ndarray:
    """P(a listing's recorded review_seconds | its violation probability p and its label, by default 1:
    a rejected original): an interval of the log-normal, as `_review_seconds` rounds to 0.1 s and clips
    at _MIN_SECONDS."""
    label = np.ones(len(p), dtype=np.int64) if label is None else label
    centre = np.log(_median_seconds(cat, p, label))
    low = np.where(seconds > _MIN_SECONDS, np.log(np.maximum(seconds - 0.05, 1e-300)), -np.inf)
    z_low, z_high = (low - centre) / _SECONDS_SD, (np.log(seconds + 0.05) - centre) / _SECONDS_SD
    return np.where(z_low > 0, ndtr(-z_low) - ndtr(-z_high), ndtr(z_high) - ndtr(z_low))  # no cancellation


def _repost_oracle(
    logits: np.ndarray, ambiguity: np.ndarray, outcome: _Outcome, seconds: np.ndarray, cat: np.ndarray
) -> dict[str, np.ndarray]:
    """Risk columns of re-posts from their originals' logits, verdicts and review times (module docstring)."""
    verdict, confirmed = _verdict_risks(_expit(logits), outcome.reason)
    # Twice the nodes: the review-time likelihood sharpens the integrand (40 nodes: within 1e-10 of 150).
    nodes, weights = np.polynomial.hermite_e.hermegauss(2 * LIMIT_NODES)
    centred = logits - ambiguity[:, None]
    evidence, joint = np.zeros(len(logits)), np.zeros(len(logits))
    for node, weight in zip(nodes, weights, strict=True):
        probs = _expit(centred + AMBIGUITY_SD * node)
        at_node = weight * _seconds_likelihood(seconds, cat, 1.0 - np.prod(1.0 - probs, axis=1))
        verdict_at, confirmed_at = _verdict_risks(probs, outcome.reason)
        evidence += at_node * verdict_at
        joint += at_node * confirmed_at
    reason = outcome.reason - 1
    true_risk, limit_risk = confirmed / verdict, joint / evidence
    return _risks(
        [np.where(reason == k, true_risk, 0.0) for k in range(len(REASONS))],
        [np.where(reason == k, limit_risk, 0.0) for k in range(len(REASONS))],
    )


def _take(columns: _T, at: np.ndarray) -> _T:
    return type(columns)(*(column[at] for column in columns))


def _timestamps(start_ns: int, seconds: np.ndarray) -> np.ndarray:
    return (start_ns + seconds.astype(np.int64) * 10**9).astype("datetime64[ns]")


def _window(start: str, months: int) -> tuple[int, float, float]:
    """Start (ns), span and drift start (seconds since start) of the generated history."""
    t0 = pd.Timestamp(start).as_unit("ns")
    t1 = t0 + pd.DateOffset(months=months)
    drift_start = max(t0, t1 - pd.DateOffset(months=DRIFT_MONTHS))
    return t0.value, (t1 - t0).total_seconds(), (drift_start - t0).total_seconds()


class World(NamedTuple):
    """Everything `generate` draws, before the frames are assembled: the latents included (diagnostics
    such as `bench/history_ceiling.py` read them; training never does). Rows of `rows` are the ordinary
    listings in time order (the replaced ones included); `source` maps the frame's rows onto them and the
    re-posts (`_merged_order`)."""

    start_ns: int
    span: float
    merchants: _Merchants
    rows: _Rows
    ambiguity: np.ndarray
    logits: np.ndarray
    outcome: _Outcome
    delay: np.ndarray
    wording: _Wording
    seconds: np.ndarray
    reposts: _Reposts
    repost_outcome: _Outcome
    repost_delay: np.ndarray
    repost_seconds: np.ndarray
    source: np.ndarray


def simulate(rows: int, seed: int = 0, start: str = "2025-01-01", months: int = 12) -> World:
    """The draws behind `generate(rows, seed, start, months)`, latents included."""
    if rows < 1 or months < 1:
        raise ValueError(f"rows and months must be >= 1, got rows={rows}, months={months}")
    rng = np.random.default_rng(seed)
    start_ns, span, drift_start = _window(start, months)
    merchants = _merchants(rng, max(1, rows // 20), span)
    r = _rows(rng, merchants, rows, span, drift_start)
    ambiguity = rng.normal(0.0, AMBIGUITY_SD, rows)
    room = _room(rng, rows)
    logits = _violation_logits(r, merchants, ambiguity)
    outcome = _outcome(rng, _expit(logits))
    delay = _review_delay(rng, rows)
    wording = _wording(rng, r)
    seconds = _review_seconds(rng, r.category, outcome)
    reposts = _reposts(rng, r, merchants, wording, outcome.label, r.created + delay, (span, drift_start), room)
    repost_outcome = _repost_outcome(rng, _expit(logits[reposts.original]), _take(outcome, reposts.original))
    repost_delay = _review_delay(rng, len(reposts.original))
    repost_seconds = _review_seconds(rng, reposts.rows.category, repost_outcome)
    source = _merged_order(r.created, reposts.rows.created, reposts.replaces)
    return World(
        start_ns, span, merchants, r, ambiguity, logits, outcome, delay, wording, seconds,
        reposts, repost_outcome, repost_delay, repost_seconds, source,
    )  # fmt: skip


def generate(
    rows: int, seed: int = 0, start: str = "2025-01-01", months: int = 12
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Synthetic review history `(reviews, oracle)`, sorted by `created_at`; same arguments, same frames.

    `oracle` holds `listing_id`, `true_risk` (the exact P(label = 1) given features and latents),
    `limit_risk` (the same with the ambiguity term integrated out), then `true_risk_<reason>` and
    `limit_risk_<reason>` for each reason in REASONS, `repost_of` (the listing_id a re-post repeats, ""
    for others), `repost_edit` (the REPOST_EDITS changed, "|"-joined) and `repost_linked` (re-posted
    from a second account); see the module docstring. Keep it out of training.
    """
    return frames(simulate(rows, seed, start, months))


def frames(w: World) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`(reviews, oracle)` of a simulated world (`generate`)."""
    rows = len(w.rows.created)
    start_ns, r, ambiguity, logits, outcome = w.start_ns, w.rows, w.ambiguity, w.logits, w.outcome
    delay, wording, seconds, reposts, source = w.delay, w.wording, w.seconds, w.reposts, w.source
    repost_outcome, repost_delay, repost_seconds = w.repost_outcome, w.repost_delay, w.repost_seconds
    at, relisted = reposts.original, reposts.rows

    is_repost = source >= rows
    from_ordinary, repost_at, from_repost = (
        np.where(is_repost, 0, source),
        np.flatnonzero(is_repost),
        source[is_repost] - rows,
    )

    def merged(ordinary: np.ndarray, repost: np.ndarray) -> np.ndarray:
        out = ordinary[from_ordinary]  # one gather, then the re-posts written in place
        out[repost_at] = repost[from_repost]
        return out

    def merged_text(ordinary: pa.Array, repost: pa.Array) -> pd.Series:
        return pa.concat_arrays([ordinary, repost]).take(source).to_pandas()

    title, brand = _titles_and_brands(r, wording)
    repost_title, repost_brand = _titles_and_brands(relisted, reposts.wording)
    created, listing_ids = merged(r.created, relisted.created), _ids("L", rows, 8)
    reviews = pd.DataFrame(
        {
            "listing_id": listing_ids.to_pandas(),
            "merchant_id": reposts.merchants.ids.take(merged(r.merchant, relisted.merchant)).to_pandas(),
            "created_at": _timestamps(start_ns, created),
            "reviewed_at": _timestamps(start_ns, created + merged(delay, repost_delay)),
            "title": merged_text(title, repost_title),
            "description": merged_text(_descriptions(r, wording), _descriptions(relisted, reposts.wording)),
            "brand": merged_text(brand, repost_brand),
            "category": pa.array(CATEGORY_NAMES, type=_TEXT).take(merged(r.category, relisted.category)).to_pandas(),
            "market": pa.array(MARKETS, type=_TEXT).take(merged(r.market, relisted.market)).to_pandas(),
            "price": merged(r.price, relisted.price),
            "merchant_tenure_days": merged(r.tenure, relisted.tenure),
            "image_count": merged(r.images, relisted.images),
            "has_certificate": merged(r.certificate, relisted.certificate),
            "label": merged(outcome.label, repost_outcome.label),
            "violation_reason": pa.array(("none", *REASONS), type=_TEXT)
            .take(merged(outcome.reason, repost_outcome.reason))
            .to_pandas(),
            "review_seconds": merged(seconds, repost_seconds),
        }
    )
    repost_risks = _repost_oracle(logits[at], ambiguity[at], _take(outcome, at), seconds[at], r.category[at])
    risks = {name: merged(column, repost_risks[name]) for name, column in _oracle(logits, ambiguity, outcome).items()}
    return reviews, pd.DataFrame(
        {"listing_id": reviews["listing_id"], **risks, **_repost_columns(reposts, source, listing_ids)}
    )


def _merged_order(created: np.ndarray, repost_created: np.ndarray, replaced: np.ndarray) -> np.ndarray:
    """Index into (ordinary rows, then re-posts) of each row of the frame: the ordinary rows but the
    replaced ones, in their (time) order, with the re-posts merged in by creation time, after ties."""
    rows, count = len(created), len(repost_created)
    kept = np.ones(rows, dtype=bool)
    kept[replaced] = False
    kept_rows = np.flatnonzero(kept)
    by_time = np.argsort(repost_created, kind="stable")
    at = np.searchsorted(created[kept_rows], repost_created[by_time], side="right") + np.arange(count)
    source = np.empty(rows, dtype=np.int64)
    is_repost = np.zeros(rows, dtype=bool)
    is_repost[at] = True
    source[~is_repost] = kept_rows
    source[at] = rows + by_time
    return source


def _repost_columns(reposts: _Reposts, source: np.ndarray, listing_ids: pa.Array) -> dict[str, pd.Series | np.ndarray]:
    """Oracle `repost_of`, `repost_edit` and `repost_linked`, in the frame's (time) order."""
    rows = len(source)
    position = np.empty(rows + len(reposts.original), dtype=np.int64)
    position[source] = np.arange(rows)  # where each ordinary row (replaced ones aside) and re-post lands
    original = np.full(rows + len(reposts.original), rows)  # `rows` indexes the "" appended below
    original[rows:] = position[reposts.original]
    ids_or_blank = pa.concat_arrays([listing_ids, pa.array([""], type=_TEXT)])
    edits = [
        "|".join(name for bit, name in enumerate(REPOST_EDITS) if code >> bit & 1)
        for code in range(1 << len(REPOST_EDITS))
    ]
    none = np.zeros(rows, dtype=np.int64)
    return {
        "repost_of": ids_or_blank.take(original[source]).to_pandas(),
        "repost_edit": pa.array(edits, type=_TEXT).take(np.concatenate([none, reposts.edits])[source]).to_pandas(),
        "repost_linked": np.concatenate([none.astype(bool), reposts.linked])[source],
    }


CATALOGUE_SYNONYMS: dict[str, tuple[str, ...]] = {
    # Names sellers and policy teams also use: the catalogue knows them, generated listings do not.
    "switchblade": ("flick knife", "automatic knife"),
    "brass knuckles": ("knuckle duster",),
    "butterfly knife": ("balisong",),
    "stun gun": ("taser",),
    "signal jammer": ("cell phone jammer",),
    "gps jammer": ("gps blocker",),
    "ivory carving": ("elephant ivory carving",),
    "oxycodone tablets": ("oxycontin",),
    "realistic replica gun": ("replica firearm",),
    "untaxed cigarettes carton": ("duty free cigarettes carton",),
}


def catalogue() -> pd.DataFrame:
    """Known prohibited products (action "block") and restricted health claims ("review"), with aliases.

    One entry per prohibited term and per health claim of the generator's pools. Aliases: the first
    obfuscated spelling in OBFUSCATIONS (the second is the one violators drift to and the catalogue has
    not caught up with), the hyphenated and unspaced forms of a multi-word name, and CATALOGUE_SYNONYMS.
    """
    entries = [(t, "prohibited_item", "block") for t in PROHIBITED_TERMS]
    entries += [(c, "misleading_health_claim", "review") for c in HEALTH_CLAIMS]
    return pd.DataFrame(
        {
            "entry_id": [f"C{i:03d}" for i in range(1, len(entries) + 1)],
            "name": [name for name, _, _ in entries],
            "aliases": [_aliases(name) for name, _, _ in entries],
            "reason": [reason for _, reason, _ in entries],
            "action": [action for _, _, action in entries],
        }
    )


def _aliases(name: str) -> list[str]:
    forms = [name.replace(" ", "-"), name.replace(" ", "")] if " " in name else []
    return list(dict.fromkeys([OBFUSCATIONS[name][0], *forms, *CATALOGUE_SYNONYMS.get(name, ())]))


def write_catalogue(path: str | Path) -> Path:
    """`catalogue()` as CSV, aliases joined by "|" (the marketplace copy is configs/catalogue.csv)."""
    frame = catalogue()
    frame["aliases"] = frame["aliases"].str.join("|")
    frame.to_csv(path, index=False)
    return Path(path)


def write_dataset(
    out_dir: str | Path, rows: int, seed: int = 0, start: str = "2025-01-01", months: int = 12
) -> dict[str, Path]:
    """Write `reviews.parquet`, `catalogue.csv` and, separately, `oracle.parquet` (never read by training)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    reviews, oracle = generate(rows, seed=seed, start=start, months=months)
    paths = {"reviews": out / "reviews.parquet", "oracle": out / "oracle.parquet"}
    reviews.to_parquet(paths["reviews"], index=False)
    oracle.to_parquet(paths["oracle"], index=False)
    return {**paths, "catalogue": write_catalogue(out / "catalogue.csv")}
