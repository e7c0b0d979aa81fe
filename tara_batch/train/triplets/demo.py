"""Built-in demo data (offline quickstart and tests): Ego4D-style narrations, WebVid-CoVR-style captions, NLI rows.
"""

from __future__ import annotations

# (video, narration) in Ego4D's style and order: "#C C" = the camera wearer, "#O" = someone else.
DEMO_NARRATIONS: tuple[tuple[str, str], ...] = (
    ("kitchen", "#C C opens the fridge"),
    ("kitchen", "#C C picks up a bottle of milk"),
    ("kitchen", "#C C closes the fridge"),
    ("kitchen", "#C C pours milk into the cup"),
    ("kitchen", "#C C puts the bottle on the counter"),
    ("kitchen", "#C C picks up the knife"),
    ("kitchen", "#C C cuts the bread with the knife"),
    ("kitchen", "#C C puts down the knife"),
    ("kitchen", "#C C opens the drawer"),
    ("kitchen", "#C C takes out a spoon from the drawer"),
    ("kitchen", "#C C closes the drawer"),
    ("kitchen", "#C C picks up the knife"),
    ("kitchen", "#C C picks up a knife from the sink"),
    ("workshop", "#C C picks up the screwdriver"),
    ("workshop", "#C C unscrews the screw from the panel"),
    ("workshop", "#C C removes the panel"),
    ("workshop", "#C C puts the panel on the table"),
    ("workshop", "#C C plugs in the drill"),
    ("workshop", "#C C turns on the drill"),
    ("workshop", "#C C drills a hole in the wood"),
    ("workshop", "#C C turns off the drill"),
    ("workshop", "#C C unplugs the drill"),
    ("workshop", "#C C puts the drill in the toolbox"),
    ("workshop", "#C C closes the toolbox"),
    ("bedroom", "#C C folds the shirt"),
    ("bedroom", "#C C places the shirt in the basket"),
    ("bedroom", "#C C unfolds the towel"),
    ("bedroom", "#C C hangs up the towel"),
    ("bedroom", "#C C zips the bag"),
    ("bedroom", "#C C ties the shoelaces"),
    ("bedroom", "#C C puts on the jacket"),
    ("bedroom", "#C C buttons the jacket"),
    ("bedroom", "#C C looks around the room"),
    ("bedroom", "#O A man X enters the room"),
    ("street", "#C C walks towards the car"),
    ("street", "#C C unlocks the car"),
    ("street", "#C C opens the car door"),
    ("street", "#C C gets in the car"),
    ("street", "#C C climbs up the stairs"),
    ("street", "#C C lifts the box"),
    ("street", "#C C lowers the box onto the floor"),
    ("street", "#C C picks the cup up"),
    ("street", "#unsure #C C fills the kettle with water"),
    ("street", "#C C empties the bucket"),
    ("street", "#C C scrolls the phone"),
)

# (source caption, edit, target caption) in WebVid-CoVR's style.
DEMO_COVR: tuple[tuple[str, str, str], ...] = (
    ("A dog runs on the beach", "make it a cat", "A cat runs on the beach"),
    ("Aerial view of a city at night", "change it to daytime", "Aerial view of a city during the day"),
    ("A woman opens a red umbrella", "make the umbrella blue", "A woman opens a blue umbrella"),
    ("Two children play football in the park", "make it one child", "A child plays football in the park"),
    ("A car drives along a snowy road", "remove the snow", "A car drives along a dry road"),
    ("Waves crash on the rocks at sunset", "make it sunrise", "Waves crash on the rocks at sunrise"),
    ("A man slices bread in the kitchen", "have him slice tomatoes instead", "A man slices tomatoes in the kitchen"),
    ("Close-up of coffee being poured into a cup", "pour tea instead", "Close-up of tea being poured into a cup"),
    ("A bird sits on a branch", "make the bird fly away", "A bird flies away from a branch"),
    ("A boy rides a bicycle", "", "A boy rides a bicycle"),
)

# (sent0, sent1, hard_neg) in SNLI / SimCSE's style.
DEMO_NLI: tuple[tuple[str, str, str], ...] = (
    ("A man is playing a guitar on stage.", "A man is performing music.", "A man is not playing any instrument."),
    ("Two dogs run through a field.", "Animals are outdoors.", "The dogs are sleeping inside."),
    ("A woman is reading a book in the park.", "A woman is reading outside.", "Nobody is reading."),
    ("Children are smiling at the camera.", "Kids are happy.", "The children never smile."),
    ("A boy jumps into a pool.", "A boy is swimming.", "The boy isn't wet."),
    ("A cyclist rides down a hill.", "A person is on a bike.", "A cyclist rides up a hill."),
    ("A chef is cooking pasta.", "Someone is making food.", "There is no food being made."),
    ("The girl doesn't like the rain.", "The girl dislikes rain.", "The girl is not outside."),
    ("A man sleeps on a couch.", "A man sleeps on a couch.", "A man is running."),
    ("A crowd watches fireworks.", "People look at the sky.", "Nothing is happening in the sky."),
    ("A dog catches a frisbee.", "A dog plays.", "A cat catches a frisbee."),
    ("A woman is not smiling.", "A woman looks serious.", "A woman is not serious."),
)
