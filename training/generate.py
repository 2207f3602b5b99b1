"""Built-in synthetic review history: realistic, seeded and vectorised (1M rows in seconds).

`generate(rows, seed, start, months)` returns `(reviews, oracle)`; `write_dataset` writes them to
`reviews.parquet` and, separately, `oracle.parquet`, which training never reads.

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

The oracle: `true_risk = p + f(p) * (1 - 2p)` is exactly
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
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

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
    drift = np.clip((created - drift_start) / (span - drift_start), 0.0, 1.0)
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
    discount = np.where(genuine | counterfeit, np.clip(np.log(luxury_norm / price), 0.0, 4.0), 0.0)
    return price, discount


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


def _outcome(rng: np.random.Generator, probs: np.ndarray) -> _Outcome:
    """A true violation with P = 1 - prod(1 - p_k), reason drawn by weight p_k; reviewers flip a few."""
    p = 1.0 - np.prod(1.0 - probs, axis=1)
    flip = reviewer_flip_probability(p)
    violation = rng.random(len(p)) < p
    label = violation ^ (rng.random(len(p)) < flip)
    cum = np.cumsum(probs, axis=1)
    kind = np.minimum(((rng.random(len(p)) * cum[:, -1])[:, None] >= cum).sum(axis=1), len(REASONS) - 1)
    reason = np.where(label, np.where(violation, kind + 1, _OTHER + 1), 0)
    return _Outcome(label.astype(np.int64), reason, p, p + flip * (1 - 2 * p))


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


def _oracle(listing_ids: pd.Series, logits: np.ndarray, ambiguity: np.ndarray, outcome: _Outcome) -> pd.DataFrame:
    """true_risk and limit_risk, then the same per reason (see the module docstring)."""
    rows, at = len(logits), _reason_rows(logits)
    true_per_reason = _dense(_label_risks([_expit(logits[r, k]) for k, r in enumerate(at)], at, rows), at, rows)
    limit_per_reason = _limit_risks(logits - ambiguity[:, None], at)
    return pd.DataFrame(
        {
            "listing_id": listing_ids,
            "true_risk": outcome.true_risk,
            "limit_risk": np.sum(limit_per_reason, axis=0),
            **{f"true_risk_{k}": c for k, c in zip(REASONS, true_per_reason, strict=True)},
            **{f"limit_risk_{k}": c for k, c in zip(REASONS, limit_per_reason, strict=True)},
        }
    )


def reviewer_flip_probability(p: np.ndarray) -> np.ndarray:
    """Chance the reviewer's verdict is wrong, given the listing's violation probability p."""
    return REVIEWER_FLIP_FLOOR + REVIEWER_FLIP_BORDERLINE * 4.0 * p * (1.0 - p)


def _review_seconds(rng: np.random.Generator, cat: np.ndarray, o: _Outcome) -> np.ndarray:
    """Category handling time, longer for ambiguous (p near 1/2) and rejected listings."""
    ambiguous = 4.0 * o.violation_prob * (1.0 - o.violation_prob)
    noise = np.exp(0.45 * rng.standard_normal(len(cat)))
    seconds = _field("seconds")[cat] * noise * (1.0 + 1.5 * ambiguous) * np.where(o.label == 1, 1.3, 1.0)
    return np.maximum(np.round(seconds, 1), 5.0)


def _titles_and_brands(rng: np.random.Generator, r: _Rows, terms: dict[str, np.ndarray]) -> tuple[pa.Array, pa.Array]:
    """Title "[brand] item modifier [- claim]"; the brand column is "" when no brand is given."""
    pools, cat, n = _pools(), r.category, len(r.category)
    branded = ~r.luxury & (r.scheme != _PROHIBITED) & (rng.random(n) < 0.75)
    brand = _text(pools["brands"], _pick(rng, pools["brands"], cat, branded))
    luxury = pools["luxury"]
    brand_shown = ~(r.variant > 0) & (rng.random(n) < np.where(r.genuine, 0.9, 0.5))
    luxury_field = _text(luxury, np.where(brand_shown, terms["luxury"], luxury.null))
    title_brand = pc.coalesce(_text(luxury, _spell(luxury, terms["luxury"], r.variant)), brand)
    in_title = rng.random(n) < 0.6
    prohibited = pools["prohibited"]
    term = _text(prohibited, np.where(in_title, _spell(prohibited, terms["prohibited"], r.variant), prohibited.null))
    item = pc.coalesce(term, _text(pools["products"], _pick(rng, pools["products"], cat)))
    claims = pools["claims"]
    claim = _text(claims, np.where(in_title, _spell(claims, terms["claims"], r.variant), claims.null))
    dash = pa.scalar("-", _TEXT)
    title = _join(
        title_brand,
        item,
        _text(pools["modifiers"], _pick(rng, pools["modifiers"], cat)),
        _join(dash, claim, nulls="emit_null"),
    )
    return title, pc.coalesce(luxury_field, brand, pa.scalar("", _TEXT))


def _risk_sentence(rng: np.random.Generator, r: _Rows, terms: dict[str, np.ndarray]) -> pa.Array:
    """The description's risky sentence (prohibited term, claim, luxury wording), null for most rows."""
    pools, n = _pools(), len(r.scheme)
    zero = np.zeros(n, dtype=np.int64)
    sentences = []
    for name, affix, mask in [
        ("prohibited", "prohibited", r.scheme == _PROHIBITED),
        ("claims", "claim", r.scheme == _CLAIM),
    ]:
        prefix, suffix, pool = pools[f"{affix}_prefix"], pools[f"{affix}_suffix"], pools[name]
        parts = (
            _text(prefix, _pick(rng, prefix, zero, mask)),
            _text(pool, _spell(pool, terms[name], r.variant)),
            _text(suffix, _pick(rng, suffix, zero, mask)),
        )
        sentences.append(_join(*parts, nulls="emit_null"))
    counterfeit = (r.scheme == _COUNTERFEIT) & ~r.hint
    authentic = (r.genuine & (rng.random(n) < 0.5)) | (counterfeit & (rng.random(n) < 0.4))
    sentences.append(_text(pools["off_platform"], _pick(rng, pools["off_platform"], zero, r.scheme == _OFF_PLATFORM)))
    sentences.append(_text(pools["hints"], _pick(rng, pools["hints"], zero, r.hint)))
    sentences.append(_text(pools["authentic"], _pick(rng, pools["authentic"], zero, authentic)))
    return pc.coalesce(*sentences)


def _descriptions(rng: np.random.Generator, r: _Rows, terms: dict[str, np.ndarray]) -> pa.Array:
    """Category sentence, risky or generic sentence, a second category sentence, an optional third."""
    pools, cat, n = _pools(), r.category, len(r.category)
    phrases = pools["phrases"]
    start, size = phrases.start[cat], phrases.size[cat]  # every category has >= 3 phrases
    first = (rng.random(n) * size).astype(np.int64)
    step2 = 1 + (rng.random(n) * (size - 1)).astype(np.int64)
    step3 = 1 + (rng.random(n) * (size - 2)).astype(np.int64)
    step3 += step3 >= step2  # three distinct sentences
    third = np.where(rng.random(n) < 0.4, start + (first + step3) % size, phrases.null)
    generic = _text(pools["generic"], _pick(rng, pools["generic"], np.zeros(n, dtype=np.int64)))
    extra = pc.coalesce(
        _text(pools["lookalikes"], _pick(rng, pools["lookalikes"], cat, r.lookalike)), _text(phrases, third)
    )
    return _join(
        _text(phrases, start + first),
        pc.coalesce(_risk_sentence(rng, r, terms), generic),
        _text(phrases, start + (first + step2) % size),
        extra,
    )


def _terms(rng: np.random.Generator, r: _Rows) -> dict[str, np.ndarray]:
    """Each row's risky term (plain-spelling index, null if none): shared by title and description."""
    pools = _pools()
    zero = np.zeros(len(r.category), dtype=np.int64)
    return {
        "luxury": _pick(rng, pools["luxury"], r.category, r.luxury),
        "prohibited": _pick(rng, pools["prohibited"], r.category, r.scheme == _PROHIBITED),
        "claims": _pick(rng, pools["claims"], zero, r.scheme == _CLAIM),
    }


def _timestamps(start_ns: int, seconds: np.ndarray) -> np.ndarray:
    return (start_ns + seconds.astype(np.int64) * 10**9).astype("datetime64[ns]")


def _window(start: str, months: int) -> tuple[int, float, float]:
    """Start (ns), span and drift start (seconds since start) of the generated history."""
    t0 = pd.Timestamp(start).as_unit("ns")
    t1 = t0 + pd.DateOffset(months=months)
    drift_start = max(t0, t1 - pd.DateOffset(months=DRIFT_MONTHS))
    return t0.value, (t1 - t0).total_seconds(), (drift_start - t0).total_seconds()


def generate(
    rows: int, seed: int = 0, start: str = "2025-01-01", months: int = 12
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Synthetic review history `(reviews, oracle)`, sorted by `created_at`; same arguments, same frames.

    `oracle` holds `listing_id`, `true_risk` (the exact P(label = 1) given features and latents),
    `limit_risk` (the same with the ambiguity term integrated out), then `true_risk_<reason>` and
    `limit_risk_<reason>` for each reason in REASONS (see the module docstring). Keep it out of training.
    """
    if rows < 1 or months < 1:
        raise ValueError(f"rows and months must be >= 1, got rows={rows}, months={months}")
    rng = np.random.default_rng(seed)
    start_ns, span, drift_start = _window(start, months)
    merchants = _merchants(rng, max(1, rows // 20), span)
    r = _rows(rng, merchants, rows, span, drift_start)
    ambiguity = rng.normal(0.0, AMBIGUITY_SD, rows)
    logits = _violation_logits(r, merchants, ambiguity)
    outcome = _outcome(rng, _expit(logits))
    delay = np.round(3600 * np.clip(np.exp(np.log(10.0) + 0.9 * rng.standard_normal(rows)), 0.25, 96.0))
    terms = _terms(rng, r)
    title, brand = _titles_and_brands(rng, r, terms)
    listing_ids = _ids("L", rows, 8).to_pandas()
    reviews = pd.DataFrame(
        {
            "listing_id": listing_ids,
            "merchant_id": merchants.ids.take(r.merchant).to_pandas(),
            "created_at": _timestamps(start_ns, r.created),
            "reviewed_at": _timestamps(start_ns, r.created + delay),
            "title": title.to_pandas(),
            "description": _descriptions(rng, r, terms).to_pandas(),
            "brand": brand.to_pandas(),
            "category": pa.array(CATEGORY_NAMES, type=_TEXT).take(r.category).to_pandas(),
            "market": pa.array(MARKETS, type=_TEXT).take(r.market).to_pandas(),
            "price": r.price,
            "merchant_tenure_days": r.tenure,
            "image_count": r.images,
            "has_certificate": r.certificate,
            "label": outcome.label,
            "violation_reason": pa.array(("none", *REASONS), type=_TEXT).take(outcome.reason).to_pandas(),
            "review_seconds": _review_seconds(rng, r.category, outcome),
        }
    )
    return reviews, _oracle(listing_ids, logits, ambiguity, outcome)


def write_dataset(
    out_dir: str | Path, rows: int, seed: int = 0, start: str = "2025-01-01", months: int = 12
) -> dict[str, Path]:
    """Write `reviews.parquet` and, separately, `oracle.parquet` (never read by training) to `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    reviews, oracle = generate(rows, seed=seed, start=start, months=months)
    paths = {"reviews": out / "reviews.parquet", "oracle": out / "oracle.parquet"}
    reviews.to_parquet(paths["reviews"], index=False)
    oracle.to_parquet(paths["oracle"], index=False)
    return paths
