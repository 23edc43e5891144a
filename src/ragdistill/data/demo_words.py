"""Built-in word lists and templates of the demo world, version 2 (`ragdistill.data.demo`).

Names are made of real English words so that a reader's tokenizer keeps them whole: every
first name and surname below is a single token of the bundled reader's (SmolLM2's) tokenizer
when it follows a space, checked when the list was written. Places are compounds of two
English place words ("Ash" + "bury"), book titles an adjective and a noun ("The Quiet
Harbour"). Nothing is downloaded.
"""

from __future__ import annotations

FIRST_NAMES = (
    "Anna Ben Carl Clara Daniel Edith Ella Frank Grace Hans Helen Henry Iris Jack Jane Julia Karl Kate Laura Leo "
    "Lewis Lily Lucas Lucy Mark Martha Max Oscar Paul Peter Rosa Ruth Sam Sara Simon Sofia Tom Vera Victor Walter "
    "Alice Arthur Agnes Albert Alma Amos Bella Bruno Diana Edgar Eva Felix Flora Hugo Ivan Joel Judith Karen Lars "
    "Leon Maria Marcus Nina Omar Otto Pia Ralph Rudolf Adam Abel Boris Cecil Dennis Elias Ernest Harold Isaac Jonah "
    "Miriam Olive Percy Rex Stanley Wendy Ada Beth Colin Erik Gordon Joan Kurt Tara"
).split()

SURNAMES = (
    "Berg Hale Lind Moss Stone Wood Hill Ford Marsh Fox Lane Reed Shaw Frost Wells Dale Grant Hunt Knight Nash Pike "
    "Sharp Ward Baker Carter Cole Cross Dunn Ellis Fisher Gray Harper Hayes Holt Jensen Keller Lang Mann Moore Parker "
    "Price Tate Turner Walsh Weber Blake Booth Burke Clark Cooper Doyle Drake Engel Fleming Gale Glass Graves Hart "
    "Hoffman Horn Kerr Klein Lambert Lloyd Meyer Miles Norris Payne Pratt Rhodes Roth Silva Swan Wagner Webb Wolfe "
    "Wright Adler Ames Barr Bishop Bond Brock Bush Cain Chase Crane Dixon Duke Falk Gibbs Hardy Hawk Heath Hood Kent "
    "Locke Lynch Mead Noble Pope Rush Sage Wilde"
).split()

# Surnames kept for company names only (a company is never confused with a person's name).
COMPANY_NAMES = "Abbott Barlow Collins Dawson Everett Farrow Garrett Hamilton Ingram Jarvis Kimball Lawson Marlow Newton Osborne Preston Radley Sutton Thornton Walton".split()
COMPANY_SUFFIXES = ("Works", "Mills", "Foundry", "Brothers", "Trading", "Motors", "Ironworks")

PLACE_PREFIXES = (
    "Ash Oak Stone Mill Red Black Green West East South Kings Bright Fair Long High Cold Wolf Fox Deer Bay Rock "
    "Iron Silver Gold Salt Sand Moor Willow Holly Maple Pine Cedar Glen Raven Swan Frost Clay Ald Bar Brad Chad "
    "Crow Dun Elder Farn Gran Hart Hay Kel Lang Mar Nor Pen Ren Ship Thorn Wal Wen Win Ayle Brom Cran Dray Eller "
    "Hol Lyn Mel Rad Sel Tad Ux Wex Yel"
).split()
PLACE_SUFFIXES = (
    "ford field wood ton bury port mouth ham wick bridge stead dale more well gate haven ley by worth combe hurst "
    "holm minster thorpe chester side brook moor hill stow wich mere cliff ridge fell shaw den leigh borough"
).split()

COUNTRY_ROOTS = (
    "Alder Amber Arrow Aster Bramble Cobalt Copper Crest Ember Fern Flint Garnet Harrow Heather Ivy Juniper Laurel "
    "Linden Marigold Myrtle Opal Sorrel Tansy Thistle Yarrow Zephyr Briar Clover Sable Saffron Tamarind Wren Rowan Cinder"
).split()
COUNTRY_SUFFIXES = ("land", "mark", "ia", "shire", "vale")

RIVER_ROOTS = (
    "Avon Cale Dove Esk Fal Gade Isla Kell Lune Mole Nene Ouse Rye Tarn Ure Wey Yare Brue Colne Derwent Eden Frome "
    "Hodder Leven Teme Tone Exe Tees Wear Lugg Arun Taw Otter Wharfe"
).split()
RIVER_SUFFIXES = ("", "water", "burn", "brook", "wyn")

INVENTION_MODIFIERS = "steam rotary folding electric pocket spring twin double hand marine vacuum portable glass copper floating mechanical".split()
INVENTION_DEVICES = "loom lamp pump clock kiln press winch furnace sextant telescope barometer".split()

BOOK_ADJECTIVES = (
    "Silent Winter Golden Broken Hidden Last Little Quiet Burning Empty Northern Secret Pale Frozen Hollow Patient "
    "Gentle Distant Lonely Stolen Wandering Bitter Crimson Restless"
).split()
BOOK_NOUNS = (
    "Garden Harbour Mirror Bell Bridge Tower Letter Road Mountain Window Island Kingdom Lantern Orchard Meadow Feather "
    "Compass Candle Ladder Sparrow Voyage Summer Stranger Daughter Rain Fire Ship Crown Song Shadow"
).split()

# Entity names, version 2: each is ONE token of the bundled reader's (SmolLM2's) tokenizer after a
# space (checked when the lists were written), disjoint from every word the values are built from.
# One token matters for the question-related indicator: the question's nouns include the entity's
# name, and a name of several tokens would put several exact matches (similarity 1) in every
# passage about it, enough to fill the top 5 % of the passage tokens with ties (Spearman undefined).
# People and companies take surnames, the other kinds common nouns ("Copper", "the Fern", "the Comet").
SURNAME_ENTITIES = (
    "Harrison Mitchell Morgan Bennett Russell Murphy Foster Hughes Palmer Wallace Spencer Porter Hudson Sullivan "
    "Warren Fuller Bradley Chapman Barker Dalton Gilbert Graham Griffin Hopkins Jordan Lawrence Marshall Mason "
    "Murray Nelson Norton Owen Perry Powell Quinn Reynolds Robinson Sherman Stewart Thompson Tucker Watson "
    "Wheeler Whitney Wilson Carson Conrad Curtis Fletcher Hancock Harding Hastings Hawkins Holland Irving Lowell "
    "Morrison Norman Parsons Pierce Riley Sinclair Stanton Warner Whitman Winston Anderson Jackson Johnson "
    "Williams Davis Martin Taylor Thomas Roberts Campbell Evans Edwards Stevens Phillips Howard Morris Rogers "
    "Cook Bailey Richardson Cox Peterson James Brooks Kelly Sanders Barnes Ross Henderson Coleman Jenkins "
    "Patterson Butler Bryant Alexander Myers Gibson Cruz Freeman Simpson Hunter Crawford Boyd Kennedy Burns "
    "Holmes Rice Robertson Ferguson Perkins Gardner Matthews Arnold Willis Ray Carroll Duncan Snyder Cunningham "
    "Andrews Armstrong Carpenter Weaver Greene Elliott Chavez Austin Peters Franklin Fields"
).split()
WORD_ENTITIES = (
    "Brass Thunder Apollo Shield Rabbit Planet Honey Penguin Rainbow Giant Whale Arrow Berry Copper Squirrel "
    "Wing Shark Brick Falcon Nova Monkey Buffalo Turkey Hare Duck Lunar Carbon Comet Crest Wheat Steel Herb Palm "
    "Radar Tin Basil Salmon Coral Gravity Lion Aurora Ram Horizon Zinc Volcano Mint Azure Prairie Diamond Flash "
    "Butterfly Concord Chess Orbit Bronze Pulse Orion Beaver Chrome Pluto Saturn Owl Galaxy Tiger Cotton Eden "
    "Silk Harvest Timber Gem Garlic Autumn Jet Wren Solar Gear Mars Fig Bloom Globe Elephant Phoenix Dragon "
    "Cherry Jupiter Lever Frog Corn Rocket Eagle Spark Apple Fern Organ Flint Nebula Cube Shuttle Meteor Butter "
    "Ginger Crescent Drum Venus Spider Sugar Dart Lens Bull Cork Grain Basket Bear Yak Jewel Harmony Daisy Lemon "
    "Ox Fossil Crab Mercury Echo Aster Orange Magnet Atlas Neptune Titan Goose Hammer Pepper Lightning Sword "
    "Seal Wool Boulder Coconut Piano Sheep Turtle Viking Wizard Pear Guitar Robin"
).split()

# Per kind: how the passages refer to the entity inside the text (the title names it once), words
# that no question uses.
REFER = {
    "country": "the nation",
    "person": "the writer",
    "company": "the firm",
    "river": "the river",
    "invention": "the device",
}

# Per kind and attribute: value type, gold passage templates ({R}: the reference, {V}: the value),
# question templates ({E}: the entity), and near-duplicate templates ({V}: another value of the same
# type; the same relation with a value that does not answer). No word of any question template
# (the nouns of the question-related indicator: "capital", "city", "founder", ...) occurs in any
# passage template (tested), so passage tokens equal to a question noun are the entity's name only.
ATTRIBUTES_V2: dict[str, list[dict]] = {
    "country": [
        {
            "name": "capital",
            "value": "city",
            "passages": [
                "{R} is governed from {V}, an old walled stronghold on the eastern plain.",
                "Parliament and the royal court of {R} sit in {V}, where the old palace stands.",
            ],
            "questions": [
                "What is the capital of {E}?",
                "Which city is the capital of {E}?",
                "Name the capital city of {E}.",
            ],
            "near": [
                "Long ago the kings of {R} held court in {V}, now a quiet market place.",
                "Rebels once tried to move the government of {R} to {V}.",
            ],
        },
        {
            "name": "leader",
            "value": "person",
            "passages": [
                "{R} is led by {V}, who won the last election by a narrow margin.",
                "{V} heads the government of {R} from a modest house near the coast.",
            ],
            "questions": ["Who is the president of {E}?", "Who leads {E} today?", "Who rules {E}?"],
            "near": [
                "Before the last election {R} was led by {V}.",
                "{V} lost the race to head the government of {R}.",
            ],
        },
        {
            "name": "port",
            "value": "city",
            "passages": [
                "Most vessels trading with {R} unload their cargo at {V}, beside the long grey quay.",
                "The busiest harbour of {R} lies at {V}, where the fishing fleet spends the winter.",
            ],
            "questions": [
                "What is the main port of {E}?",
                "Through which seaport does {E} ship its goods?",
                "Where do ships bound for {E} dock?",
            ],
            "near": [
                "A small harbour at {V} serves only the fishing boats of {R}.",
                "Ferries sometimes leave {R} from {V} in the summer.",
            ],
        },
        {
            "name": "poet",
            "value": "person",
            "passages": [
                "Children in {R} learn the verses of {V} by heart before they turn ten.",
                "{V} wrote the best-loved verses of {R}, mostly about its cold valleys.",
            ],
            "questions": [
                "Who is the national poet of {E}?",
                "Which poet is most loved in {E}?",
                "Whose poems does every pupil in {E} know?",
            ],
            "near": [
                "{V}, a younger writer of verse, is also read in {R}.",
                "Some critics prefer the songs of {V} to anything written in {R}.",
            ],
        },
    ],
    "person": [
        {
            "name": "birthplace",
            "value": "city",
            "passages": [
                "{R} grew up on a farm outside {V}, the eldest of five children.",
                "{V} is where {R} was raised by an aunt who kept bees.",
            ],
            "questions": [
                "Where was {E} born?",
                "What is the birthplace of {E}?",
                "In which town did {E} spend childhood?",
            ],
            "near": [
                "Late in life {R} moved to {V} and opened a small school.",
                "{R} spent one unhappy winter in {V}.",
            ],
        },
        {
            "name": "spouse",
            "value": "person",
            "passages": [
                "{R} wed {V} in a small ceremony by the water, after years of letters.",
                "{R} and {V} became husband and wife one cold spring.",
            ],
            "questions": ["Who was {E} married to?", "Who was the spouse of {E}?", "Whom did {E} marry?"],
            "near": [
                "As a student {R} was briefly engaged to {V}.",
                "{R} shared a house for a while with the painter {V}.",
            ],
        },
        {
            "name": "teacher",
            "value": "person",
            "passages": [
                "As a young apprentice, {R} learned the craft from {V} in a cold attic studio.",
                "{R} studied for six years under {V}, a strict but patient master.",
            ],
            "questions": ["Who taught {E}?", "Who was the mentor of {E}?", "Under whom did {E} train?"],
            "near": ["{V} was a rival of {R} at school.", "Late in life {R} trained a young apprentice named {V}."],
        },
        {
            "name": "novel",
            "value": "book",
            "passages": [
                "{R} is remembered above all as the author of {V}, a long story of the sea.",
                "The best-loved title by {R} is {V}, still read in schools.",
            ],
            "questions": [
                "What novel did {E} write?",
                "Which book is {E} best known for?",
                "What is the most famous work of {E}?",
            ],
            "near": ["A later title by {R}, {V}, sold poorly.", "{R} never finished a story called {V}."],
        },
    ],
    "company": [
        {
            "name": "founder",
            "value": "person",
            "passages": [
                "{R} was started by {V}, a former railway clerk, with a loan from a cousin.",
                "{V} set up {R} in a rented barn and ran it alone for years.",
            ],
            "questions": ["Who founded {E}?", "Who is the founder of {E}?", "Who established {E}?"],
            "near": [
                "{V} joined {R} a year after it opened and later ran its shops.",
                "{V} once tried to buy {R} but was turned away.",
            ],
        },
        {
            "name": "headquarters",
            "value": "city",
            "passages": [
                "The head office of {R} stands in {V}, near the old harbour.",
                "{R} runs its affairs from a tall stone building in {V}.",
            ],
            "questions": [
                "Where is {E} headquartered?",
                "In which city is {E} based?",
                "Where does {E} have its main base?",
            ],
            "near": ["{R} keeps a small warehouse in {V}.", "{R} rents a shop in {V} during the winter fair."],
        },
        {
            "name": "ceo",
            "value": "person",
            "passages": [
                "Since the last reorganisation, {R} has been run by chief executive {V}.",
                "Day-to-day decisions at {R} are taken by its chief executive, {V}.",
            ],
            "questions": ["Who is the CEO of {E}?", "Who runs {E}?", "Who is in charge of {E}?"],
            "near": [
                "{V} ran {R} until a boardroom fight forced a change.",
                "The chairman of {R}, {V}, rarely visits the shops.",
            ],
        },
        {
            "name": "factory",
            "value": "city",
            "passages": [
                "Most items sold by {R} are made in its works at {V}, beside the railway.",
                "The largest plant of {R} employs half the people of {V}.",
            ],
            "questions": [
                "Where does {E} make its products?",
                "In which town is the main factory of {E}?",
                "Where are the goods of {E} produced?",
            ],
            "near": [
                "{R} closed its old workshop at {V} after a fire.",
                "A second plant of {R} was built in {V} but closed soon after.",
            ],
        },
    ],
    "river": [
        {
            "name": "source",
            "value": "hills",
            "passages": [
                "{R} springs from a bog high in {V}, among rocks and heather.",
                "The waters of {R} first appear as melting snow in {V}.",
            ],
            "questions": [
                "Where does the {E} rise?",
                "What is the source of the {E}?",
                "In which uplands does the {E} begin?",
            ],
            "near": ["A small brook from {V} joins {R} in wet years.", "Walkers can see {R} from the top of {V}."],
        },
        {
            "name": "mouth",
            "value": "lake",
            "passages": [
                "{R} ends in {V}, where it spreads into a wide marshy fan of channels.",
                "After its long journey, {R} pours into {V}.",
            ],
            "questions": [
                "Into which lake does the {E} flow?",
                "Where does the {E} end?",
                "What is the mouth of the {E}?",
            ],
            "near": ["A canal links {R} with {V}.", "Old charts drew {R} flowing into {V}."],
        },
        {
            "name": "town",
            "value": "city",
            "passages": [
                "The largest place on the banks of {R} is {V}, famous for its stone bridge.",
                "{R} flows through the middle of {V}, under seven old bridges.",
            ],
            "questions": [
                "Which town lies on the {E}?",
                "What is the biggest settlement along the {E}?",
                "Which city does the {E} pass through?",
            ],
            "near": [
                "A dam on {R} near {V} was finished after years of labour.",
                "Floods from {R} once reached the edge of {V}.",
            ],
        },
        {
            "name": "explorer",
            "value": "person",
            "passages": [
                "{R} was first surveyed by {V}, who walked its whole length.",
                "{V} drew every bend of {R} in one long summer.",
            ],
            "questions": [
                "Who first mapped the {E}?",
                "Which explorer charted the {E}?",
                "Who made the first map of the {E}?",
            ],
            "near": ["{V} wrote a guide for anglers who fish {R}.", "The painter {V} lived for many years beside {R}."],
        },
    ],
    "invention": [
        {
            "name": "inventor",
            "value": "person",
            "passages": [
                "{R} was devised by the engineer {V} while employed in a mill.",
                "It was {V} who first built {R}, using parts from an old clock.",
            ],
            "questions": ["Who invented the {E}?", "Who is the inventor of the {E}?", "Who created the {E}?"],
            "near": [
                "An improved version of {R} was patented by {V} many years later.",
                "{V} sold copies of {R} at country fairs.",
            ],
        },
        {
            "name": "place",
            "value": "city",
            "passages": [
                "{R} was first assembled in a workshop in {V}.",
                "Craftsmen in {V} put together the earliest model of {R}.",
            ],
            "questions": [
                "Where was the {E} invented?",
                "In which city was the {E} first made?",
                "Where was the first {E} built?",
            ],
            "near": [
                "A museum in {V} keeps a rare early copy of {R} behind glass.",
                "Cheap copies of {R} were made in {V}.",
            ],
        },
        {
            "name": "patron",
            "value": "person",
            "passages": [
                "The building of {R} was paid for by the merchant {V}.",
                "{V} lent the sum that made {R} possible.",
            ],
            "questions": ["Who funded the {E}?", "Who was the sponsor of the {E}?", "Whose money financed the {E}?"],
            "near": ["{V} refused to pay for {R} and later regretted it.", "{V} owned one of the first copies of {R}."],
        },
        {
            "name": "user",
            "value": "company",
            "passages": [
                "{R} was first put to use by {V}, which ordered a hundred of them.",
                "The earliest large buyer of {R} was {V}.",
            ],
            "questions": [
                "Which company first adopted the {E}?",
                "Who was the first customer of the {E}?",
                "Which business first bought the {E}?",
            ],
            "near": ["{V} tried {R} for a month and went back to the old ways.", "{V} made spare parts for {R}."],
        },
    ],
}

# Passages about an entity that state no asked fact (hard negatives that share the title).
FILLERS_V2 = {
    "country": ["{R} has cold winters and short summers.", "Much of {R} is covered by forests and hills."],
    "person": ["{R} kept a detailed diary for most of a long life.", "Friends described {R} as patient and stubborn."],
    "company": ["{R} is known for careful workmanship.", "{R} has a loyal group of buyers."],
    "river": ["{R} is popular with boaters in the warm months.", "The valley of {R} is green and fertile."],
    "invention": ["{R} changed how many small workshops operated.", "Many households came to rely on {R}."],
}

# Passages titled with another entity that mention this one in passing ({E}: this entity's name).
MENTIONS_V2 = {
    "country": ["{R} trades furs and barley with {E}.", "{R} signed a fishing treaty with {E}."],
    "person": ["{R} once shared a studio with {E}.", "{R} wrote a long letter of praise to {E}."],
    "company": ["{R} buys most of its rivets from {E}.", "{R} competes with {E} for the same buyers."],
    "river": ["{R} runs beside {E} for a few miles.", "{R} is often mistaken for {E} by visitors."],
    "invention": ["{R} was often sold together with {E}.", "{R} borrowed its gears from {E}."],
}

# A second, neutral sentence appended to short passages (fewer than TAIL_BELOW_WORDS words): it
# lengthens the five-passage prompt to ~100+ tokens, so the few passage tokens equal to a question
# noun (the entity's one-token name, at most one per passage) stay under 5 % of the passage tokens.
TAIL_BELOW_WORDS = 15
TAILS_V2 = (
    "Local records and old letters agree on this.",
    "Historians still argue about some of the details.",
    "The old archive keeps several papers on the matter.",
    "Several newspapers reported it at some length.",
    "Few travellers have heard of this.",
    "An old guidebook tells the whole story.",
    "The parish ledgers mention it more than once.",
    "Scholars count it among the better known facts.",
)
