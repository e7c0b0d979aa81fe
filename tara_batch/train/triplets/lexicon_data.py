"""The chiral lexicon's data: every head verb's five forms, the bijection of temporally opposite verb phrases, the
place prepositions that follow an action, and the direction-word pairs. Written out, never derived by rule.
"""

from __future__ import annotations

SLOTS = ("base", "s", "ing", "past", "pp")

# --------------------------------------------------------------------------------------------------------------------
# 1. Verb forms: base -> (3rd person -s, -ing, past, past participle). Written out, never derived by rule, so each
# spelling (doubling, -ie -> -ying, irregulars) is visible and reviewable.
# --------------------------------------------------------------------------------------------------------------------

VERB_FORMS: dict[str, tuple[str, str, str, str]] = {
    "open": ("opens", "opening", "opened", "opened"),
    "close": ("closes", "closing", "closed", "closed"),
    "pick": ("picks", "picking", "picked", "picked"),
    "put": ("puts", "putting", "put", "put"),
    "push": ("pushes", "pushing", "pushed", "pushed"),
    "pull": ("pulls", "pulling", "pulled", "pulled"),
    "fold": ("folds", "folding", "folded", "folded"),
    "unfold": ("unfolds", "unfolding", "unfolded", "unfolded"),
    "screw": ("screws", "screwing", "screwed", "screwed"),
    "unscrew": ("unscrews", "unscrewing", "unscrewed", "unscrewed"),
    "plug": ("plugs", "plugging", "plugged", "plugged"),
    "unplug": ("unplugs", "unplugging", "unplugged", "unplugged"),
    "enter": ("enters", "entering", "entered", "entered"),
    "exit": ("exits", "exiting", "exited", "exited"),
    "climb": ("climbs", "climbing", "climbed", "climbed"),
    "descend": ("descends", "descending", "descended", "descended"),
    "lift": ("lifts", "lifting", "lifted", "lifted"),
    "lower": ("lowers", "lowering", "lowered", "lowered"),
    "place": ("places", "placing", "placed", "placed"),
    "remove": ("removes", "removing", "removed", "removed"),
    "turn": ("turns", "turning", "turned", "turned"),
    "switch": ("switches", "switching", "switched", "switched"),
    "tie": ("ties", "tying", "tied", "tied"),
    "untie": ("unties", "untying", "untied", "untied"),
    "zip": ("zips", "zipping", "zipped", "zipped"),
    "unzip": ("unzips", "unzipping", "unzipped", "unzipped"),
    "lock": ("locks", "locking", "locked", "locked"),
    "unlock": ("unlocks", "unlocking", "unlocked", "unlocked"),
    "wrap": ("wraps", "wrapping", "wrapped", "wrapped"),
    "unwrap": ("unwraps", "unwrapping", "unwrapped", "unwrapped"),
    "pack": ("packs", "packing", "packed", "packed"),
    "unpack": ("unpacks", "unpacking", "unpacked", "unpacked"),
    "load": ("loads", "loading", "loaded", "loaded"),
    "unload": ("unloads", "unloading", "unloaded", "unloaded"),
    "fill": ("fills", "filling", "filled", "filled"),
    "empty": ("empties", "emptying", "emptied", "emptied"),
    "attach": ("attaches", "attaching", "attached", "attached"),
    "detach": ("detaches", "detaching", "detached", "detached"),
    "insert": ("inserts", "inserting", "inserted", "inserted"),
    "take": ("takes", "taking", "took", "taken"),
    "connect": ("connects", "connecting", "connected", "connected"),
    "disconnect": ("disconnects", "disconnecting", "disconnected", "disconnected"),
    "button": ("buttons", "buttoning", "buttoned", "buttoned"),
    "unbutton": ("unbuttons", "unbuttoning", "unbuttoned", "unbuttoned"),
    "cover": ("covers", "covering", "covered", "covered"),
    "uncover": ("uncovers", "uncovering", "uncovered", "uncovered"),
    "start": ("starts", "starting", "started", "started"),
    "stop": ("stops", "stopping", "stopped", "stopped"),
    "appear": ("appears", "appearing", "appeared", "appeared"),
    "disappear": ("disappears", "disappearing", "disappeared", "disappeared"),
    "roll": ("rolls", "rolling", "rolled", "rolled"),
    "unroll": ("unrolls", "unrolling", "unrolled", "unrolled"),
    "stack": ("stacks", "stacking", "stacked", "stacked"),
    "unstack": ("unstacks", "unstacking", "unstacked", "unstacked"),
    "fasten": ("fastens", "fastening", "fastened", "fastened"),
    "unfasten": ("unfastens", "unfastening", "unfastened", "unfastened"),
    "inflate": ("inflates", "inflating", "inflated", "inflated"),
    "deflate": ("deflates", "deflating", "deflated", "deflated"),
    "mount": ("mounts", "mounting", "mounted", "mounted"),
    "dismount": ("dismounts", "dismounting", "dismounted", "dismounted"),
    "get": ("gets", "getting", "got", "got"),  # "gotten" is not produced (nor recognised)
    "arrive": ("arrives", "arriving", "arrived", "arrived"),
    "depart": ("departs", "departing", "departed", "departed"),
    "go": ("goes", "going", "went", "gone"),
    "come": ("comes", "coming", "came", "come"),
    "sit": ("sits", "sitting", "sat", "sat"),
    "stand": ("stands", "standing", "stood", "stood"),
    "lie": ("lies", "lying", "lay", "lain"),
    "wake": ("wakes", "waking", "woke", "woken"),
    "fall": ("falls", "falling", "fell", "fallen"),
    "hang": ("hangs", "hanging", "hung", "hung"),
    "tighten": ("tightens", "tightening", "tightened", "tightened"),
    "loosen": ("loosens", "loosening", "loosened", "loosened"),
    "grow": ("grows", "growing", "grew", "grown"),
    "shrink": ("shrinks", "shrinking", "shrank", "shrunk"),
    "assemble": ("assembles", "assembling", "assembled", "assembled"),
    "disassemble": ("disassembles", "disassembling", "disassembled", "disassembled"),
    "dress": ("dresses", "dressing", "dressed", "dressed"),
    "undress": ("undresses", "undressing", "undressed", "undressed"),
    "bury": ("buries", "burying", "buried", "buried"),
    "dig": ("digs", "digging", "dug", "dug"),
    "freeze": ("freezes", "freezing", "froze", "frozen"),
    "melt": ("melts", "melting", "melted", "melted"),
    "inhale": ("inhales", "inhaling", "inhaled", "inhaled"),
    "exhale": ("exhales", "exhaling", "exhaled", "exhaled"),
    "speed": ("speeds", "speeding", "sped", "sped"),
    "slow": ("slows", "slowing", "slowed", "slowed"),
    "zoom": ("zooms", "zooming", "zoomed", "zoomed"),
    "increase": ("increases", "increasing", "increased", "increased"),
    "decrease": ("decreases", "decreasing", "decreased", "decreased"),
    "accelerate": ("accelerates", "accelerating", "accelerated", "accelerated"),
    "decelerate": ("decelerates", "decelerating", "decelerated", "decelerated"),
    "hide": ("hides", "hiding", "hid", "hidden"),
    "reveal": ("reveals", "revealing", "revealed", "revealed"),
    "cap": ("caps", "capping", "capped", "capped"),
    "uncap": ("uncaps", "uncapping", "uncapped", "uncapped"),
    "seal": ("seals", "sealing", "sealed", "sealed"),
    "unseal": ("unseals", "unsealing", "unsealed", "unsealed"),
}

# --------------------------------------------------------------------------------------------------------------------
# 2. The chiral pairs (base forms). Each phrase appears once: the lexicon is a bijection.
# --------------------------------------------------------------------------------------------------------------------

LEXICON: tuple[tuple[str, str], ...] = (
    ("open", "close"),
    ("pick up", "put down"),
    ("push", "pull"),
    ("fold", "unfold"),
    ("screw", "unscrew"),
    ("plug in", "unplug"),
    ("enter", "exit"),
    ("climb", "descend"),
    ("climb up", "climb down"),
    ("lift", "lower"),
    ("place", "remove"),
    ("turn on", "turn off"),
    ("switch on", "switch off"),
    ("tie", "untie"),
    ("zip", "unzip"),
    ("lock", "unlock"),
    ("wrap", "unwrap"),
    ("pack", "unpack"),
    ("load", "unload"),
    ("fill", "empty"),
    ("attach", "detach"),
    ("insert", "pull out"),
    ("put in", "take out"),
    ("put on", "take off"),
    ("connect", "disconnect"),
    ("button", "unbutton"),
    ("cover", "uncover"),
    ("start", "stop"),
    ("appear", "disappear"),
    ("roll up", "unroll"),
    ("stack", "unstack"),
    ("fasten", "unfasten"),
    ("inflate", "deflate"),
    ("mount", "dismount"),
    ("get on", "get off"),
    ("arrive", "depart"),
    ("go in", "come out"),
    ("come in", "go out"),
    ("get in", "get out"),
    ("sit down", "stand up"),
    ("lie down", "get up"),
    ("wake up", "fall asleep"),
    ("hang up", "take down"),
    ("tighten", "loosen"),
    ("grow", "shrink"),
    ("assemble", "disassemble"),
    ("dress", "undress"),
    ("bury", "dig up"),
    ("freeze", "melt"),
    ("inhale", "exhale"),
    ("speed up", "slow down"),
    ("zoom in", "zoom out"),
    ("increase", "decrease"),
    ("accelerate", "decelerate"),
    ("hide", "reveal"),
    ("cap", "uncap"),
    ("seal", "unseal"),
)

# Goal phrases move something TO a place (default preposition for the place); their opposites, the source phrases,
# move it FROM a place. Pairs are always goal <-> source (a test checks).
GOAL_PREP: dict[str, str] = {
    "put down": "on", "place": "on", "put on": "on", "put in": "in", "insert": "into", "plug in": "into",
    "attach": "to", "connect": "to", "load": "into", "pack": "into", "lower": "onto", "sit down": "on",
    "lie down": "on", "hang up": "on", "screw": "into",
}

SOURCE_PHRASES: frozenset[str] = frozenset({
    "pick up", "remove", "take off", "take out", "pull out", "unplug", "detach", "disconnect", "unload", "unpack",
    "lift", "stand up", "get up", "take down", "unscrew",
})

# Movement of the subject itself: followed by a noun phrase, their particle is a preposition ("comes out of the
# room" <-> "goes into the room").
INTRANSITIVE: frozenset[str] = frozenset({"go in", "come out", "come in", "go out", "get in", "get out"})

# Heads whose base form is also a common noun or adjective ("the lock", "an empty cup", "leaves the door open"):
# their base form counts as a verb only after a subject pronoun, modal, "to", "and"/"or" or at sentence start.
NOUN_OR_ADJ_HEADS: frozenset[str] = frozenset({
    "open", "close", "empty", "lower", "lock", "pack", "load", "stack", "cover", "button", "place", "lift", "mount",
    "tie", "wrap", "zip", "screw", "plug", "start", "stop", "exit", "fill", "dress", "hide", "cap", "seal", "speed",
    "slow", "increase", "decrease", "roll",
})

# Particles used as prepositions before a noun phrase ("puts the cup in the sink") take this surface in a rewrite;
# both surfaces are recognised.
PARTICLE_PREP = {"in": "into", "out": "out of", "on": "on", "off": "off", "up": "up", "down": "down"}

PARTICLE_SURFACES: dict[str, tuple[tuple[str, ...], ...]] = {
    "in": (("into",), ("in",)), "out": (("out", "of"), ("out",)), "on": (("onto",), ("on",)),
}

# Only these particles can head a prepositional phrase after a separated object ("takes the lid off the pot").
PREPOSITIONAL_PARTICLES = frozenset({"in", "out", "on", "off"})

# --------------------------------------------------------------------------------------------------------------------
# 3. Direction words. Bare up/down/in/out/on/off are in the table (so `opposite` knows them) but never rewritten on
# their own inside a sentence (AMBIGUOUS_DIRECTIONS): they are particles of the verbs above or place prepositions.
# --------------------------------------------------------------------------------------------------------------------

DIRECTION_PAIRS: tuple[tuple[str, str], ...] = (
    ("left", "right"),
    ("leftward", "rightward"),
    ("leftwards", "rightwards"),
    ("forward", "backward"),
    ("forwards", "backwards"),
    ("upward", "downward"),
    ("upwards", "downwards"),
    ("inward", "outward"),
    ("inwards", "outwards"),
    ("clockwise", "counterclockwise"),
    ("into", "out of"),
    ("towards", "away from"),
    ("upstairs", "downstairs"),
    ("uphill", "downhill"),
    ("upstream", "downstream"),
    ("north", "south"),
    ("east", "west"),
    ("up", "down"),
    ("in", "out"),
    ("on", "off"),
    ("inside", "outside"),
)

AMBIGUOUS_DIRECTIONS: frozenset[str] = frozenset({"up", "down", "in", "out", "on", "off", "inside", "outside"})

# "right now", "all right", "right after": not a direction.
RIGHT_NOT_DIRECTION_NEXT = frozenset({"now", "away", "after", "before", "here", "there", "then", "back"})
