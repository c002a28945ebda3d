"""The closed vocabularies of SynthWorld: every factor value a scene can take.

Keeping them in one place lets captions, the VQA suite and the embedding analysis enumerate
factor values without importing the renderer.
"""

from __future__ import annotations

# category -> (superclass, plural). Shapes are drawn in ``pictograms.py``.
CATEGORIES: dict[str, tuple[str, str]] = {
    # animals
    "fish": ("animal", "fish"),
    "bird": ("animal", "birds"),
    "cat": ("animal", "cats"),
    "butterfly": ("animal", "butterflies"),
    "snail": ("animal", "snails"),
    "turtle": ("animal", "turtles"),
    # vehicles
    "car": ("vehicle", "cars"),
    "bicycle": ("vehicle", "bicycles"),
    "boat": ("vehicle", "boats"),
    "airplane": ("vehicle", "airplanes"),
    "rocket": ("vehicle", "rockets"),
    "truck": ("vehicle", "trucks"),
    # food
    "apple": ("food", "apples"),
    "banana": ("food", "bananas"),
    "mushroom": ("food", "mushrooms"),
    "carrot": ("food", "carrots"),
    "cherry": ("food", "cherries"),
    "ice cream": ("food", "ice creams"),
    # everyday objects and tools
    "hammer": ("object", "hammers"),
    "key": ("object", "keys"),
    "cup": ("object", "cups"),
    "umbrella": ("object", "umbrellas"),
    "bell": ("object", "bells"),
    "light bulb": ("object", "light bulbs"),
    # symbols and plain shapes
    "star": ("shape", "stars"),
    "heart": ("shape", "hearts"),
    "arrow": ("shape", "arrows"),
    "moon": ("shape", "moons"),
    "lightning bolt": ("shape", "lightning bolts"),
    "diamond": ("shape", "diamonds"),
    # nature and places
    "house": ("nature", "houses"),
    "tree": ("nature", "trees"),
    "flower": ("nature", "flowers"),
    "cloud": ("nature", "clouds"),
    "sun": ("nature", "suns"),
    "mountain": ("nature", "mountains"),
}
SUPERCLASSES: tuple[str, ...] = tuple(dict.fromkeys(s for s, _ in CATEGORIES.values()))

# Saturated object colours; backgrounds are pale so every colour stands out.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 38, 38),
    "orange": (245, 135, 20),
    "yellow": (250, 210, 25),
    "green": (40, 160, 60),
    "blue": (35, 85, 225),
    "purple": (135, 55, 185),
    "pink": (245, 115, 185),
    "brown": (125, 75, 35),
    "black": (28, 28, 28),
    "white": (252, 252, 252),
    "gray": (135, 135, 135),
    "cyan": (30, 195, 215),
}

TEXTURES: tuple[str, ...] = ("solid", "stripes", "dots", "checker", "noise")
# Rendering styles act on objects only (never on background or text).
STYLES: tuple[str, ...] = ("flat", "outline", "sketch", "pixel", "blur")
BACKGROUNDS: tuple[str, ...] = ("plain", "gradient", "grid", "noise", "landscape")
# size name -> side of the object's box as a fraction of the image side
SIZES: dict[str, float] = {"small": 0.33, "medium": 0.43, "large": 0.56}

# Embedded text: size name -> cap height as a fraction of the image side.
TEXT_SIZES: dict[str, float] = {"small": 0.16, "medium": 0.19, "large": 0.23}
TEXT_KINDS: tuple[str, ...] = ("word", "number", "price")
TEXT_CASES: tuple[str, ...] = ("lower", "title", "upper")
# Text colours are dark (readable on the pale backgrounds) unless a dark plate sits behind.
TEXT_COLOURS_DARK: tuple[str, ...] = ("black", "red", "blue", "green", "purple", "brown")
TEXT_COLOURS_LIGHT: tuple[str, ...] = ("white", "yellow", "cyan", "pink")
TEXT_COLOUR_RGB: dict[str, tuple[int, int, int]] = {
    "black": (15, 15, 15),
    "red": (190, 20, 20),
    "blue": (20, 45, 170),
    "green": (20, 110, 35),
    "purple": (100, 30, 140),
    "brown": (95, 55, 20),
    "white": (255, 255, 255),
    "yellow": (255, 225, 40),
    "cyan": (90, 230, 245),
    "pink": (255, 160, 210),
}
# plate behind the text (a sign), or None for text straight on the background
PLATES: dict[str, tuple[int, int, int]] = {
    "white": (255, 255, 255),
    "black": (20, 20, 20),
    "yellow": (255, 220, 60),
}
DARK_PLATES: frozenset[str] = frozenset({"black"})

# 300+ common short words for embedded text (signs, labels, shop fronts...). Category and colour
# names are included on purpose: a word that contradicts the picture is a useful probe.
_GENERAL_WORDS = """
able acid aged also area army away baby back ball band bank base bath bean bear beat bed beef
beer bell belt best bike bill bird blue boat body bold bone book boot born boss bowl bread
brick bright brush build burn busy cake call calm camp card care cash cast city clay clean
clear clock close cloud coal coat code coffee cold cook cool copy corn cost crew crop cross
crowd dance dark data date dawn deal deep desk diet dish door down draw dream dress drink
drive drop drum duck dust duty earth east easy edge egg empty enter exit face fact fair farm
fast fear feed file film fire firm fish flag flat food foot fork free fresh frog fruit fuel
full fund game garden gate gift girl glad glass goal gold golf good grass great green grow
hair half hall hand happy hard harm head heat help hero high hill hold hole home hope horse
host hotel hour house huge idea inch iron island item jazz job join joke jump just keep kind
king kiss kite knee knife lake lamp land lane last late lead leaf left lemon lens level life
lift light line lion list live load loan local lock long look lord loud love luck lunch made
mail main make mall many map mark market meal meat menu milk mind mint mode moon more most
move music name navy near neck need nest news nice night noon north note ocean office open
page paint pair palm paper park party pass path peace pearl pen pilot pink pipe plan plant
play plus poem pool port post pour power price print pull pump pure push queen quick quiet
race radio rain read real rest rice rich ride ring river road rock roof room root rope rose
round royal rule safe sale salt sand save school sea seat seed sell ship shoe shop show side
sign silk silver sing sink size sky sleep slow small smile snow soap sofa soft soil song soup
south space speed spice spin sport spring stamp star start stay step stone stop store storm
street sugar summer super swim table tail talk tall taxi team tent test thin tide tiger time
tiny toast today tone tool top tour town toy track trade train trip true tube tune turn twin
union unit urban use valley van vast view voice vote wait wake walk wall warm wash watch water
wave wax way west wheel white wide wild wind wine wing winter wise wish wolf wood word work
yard year yoga young zero zone zoo
"""
WORDS: tuple[str, ...] = tuple(
    dict.fromkeys(
        [*_GENERAL_WORDS.split(), *(c for c in CATEGORIES if " " not in c), *COLOURS.keys()]
    )
)

# --- charts, tables and documents -------------------------------------------------------------
# Short labels (<= 3 letters) stay legible under a bar at 64 px; long ones are used when room.
LABEL_POOLS: dict[str, tuple[str, ...]] = {
    "names": ("Ann", "Bob", "Eve", "Tom", "Sue", "Max", "Ada", "Leo", "Ivy", "Sam"),
    "months": ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
    "days": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
    "animals": ("cat", "dog", "cow", "pig", "hen", "fox", "owl", "bee", "ant", "elk"),
    "fruit": ("apple", "pear", "plum", "lime", "fig", "kiwi", "mango", "peach", "grape"),
    "cities": ("Rome", "Oslo", "Lima", "Kyiv", "Cairo", "Delhi", "Paris", "Tokyo", "Quito"),
}
# chart topic -> label pool; ordered pools (months, days) suit line charts
CHART_TOPICS: dict[str, str] = {
    "votes": "names",
    "scores": "names",
    "goals": "names",
    "sales": "months",
    "rainfall": "months",
    "visitors": "days",
    "orders": "days",
    "pets": "animals",
    "farm animals": "animals",
    "fruit sales": "fruit",
    "fruit stock": "fruit",
    "city trips": "cities",
}
ORDERED_POOLS: frozenset[str] = frozenset({"months", "days"})
# table topic -> (header, column kinds); kinds: a label pool name, "int", "price", "word"
TABLE_SCHEMAS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "prices": (("item", "price", "stock"), ("fruit", "price", "int")),
    "scores": (("name", "score", "team"), ("names", "int", "animals")),
    "trips": (("city", "days", "cost"), ("cities", "int", "price")),
    "pets": (("pet", "age", "name"), ("animals", "int", "names")),
    "schedule": (("day", "task", "hours"), ("days", "word", "int")),
}
DOC_PAPERS: dict[str, tuple[int, int, int]] = {
    "white": (255, 255, 255),
    "cream": (250, 244, 225),
    "gray": (236, 236, 236),
    "blue": (228, 238, 250),
}
DOC_KINDS: tuple[str, ...] = ("bar", "line", "pie", "table", "document")


def superclass(category: str) -> str:
    """Superclass of a category (``animal``, ``vehicle``...)."""
    return CATEGORIES[category][0]
