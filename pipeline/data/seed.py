"""Deterministic generator of the project's synthetic, labelled seed corpus.

The seed corpus exists so that a demo classifier can be trained when a user has no labelled data of
their own. It is composed from templates and slot fillers written by hand for this project; it is not
a benchmark and says nothing about real-world accuracy. Real use starts from the user's own labelled
posts or from labels produced by the frontier model.

Content rules (kept on purpose, see ``pipeline/data/README.md``):

* hate posts target *invented* groups only (``Zorbians``, ``Flerks``, ...), never real protected groups,
  and contain no real slurs;
* sexual posts are mild solicitation, never graphic;
* self-harm posts express risk, never methods;
* violence posts are threats or incitement, never gore.

``safe`` includes *hard negatives*: innocent posts that borrow the vocabulary of a harmful class (game
trash talk, idioms, news reports, condemnation of hate, support resources, genuine shopping questions).

Regenerate the committed file with::

    python -m pipeline.data.seed pipeline/data/seed_corpus.jsonl
"""

from __future__ import annotations

import json
import random
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

LABELS: tuple[str, ...] = ("safe", "spam", "harassment", "hate", "sexual", "violence", "self_harm")
"""The taxonomy, in a fixed order (the order in which rows are generated before the final shuffle)."""

DEFAULT_COUNTS: dict[str, int] = {
    "safe": 1800,
    "spam": 600,
    "harassment": 400,
    "hate": 320,
    "violence": 320,
    "sexual": 280,
    "self_harm": 280,
}
"""About 4,000 rows, moderately imbalanced like real traffic."""

HARD_NEGATIVE_FRACTION = 0.34
"""Share of the ``safe`` rows that are hard negatives."""

DEFAULT_SEED = 7
CORPUS_PATH = Path(__file__).with_name("seed_corpus.jsonl")

# --------------------------------------------------------------------------------------------------
# Slot fillers. A template names a slot as ``{name}``; a trailing digit (``{name2}``) is a second,
# independent draw from the same list. The same token within one template gets the same value.
# --------------------------------------------------------------------------------------------------

FILLERS: dict[str, tuple[str, ...]] = {
    "name": (
        "Jamie", "Priya", "Tom", "Aisha", "Marco", "Lena", "Kwame", "Sofia", "Dev", "Hannah", "Luis", "Mei",
        "Oliver", "Fatima", "Ben", "Chloe", "Tariq", "Grace", "Mateo", "Zoe", "Ibrahim", "Nora", "Sam",
        "Yuki", "Dan", "Amara", "Callum", "Rosa", "Leo", "Ines", "Kofi", "Ella", "Ravi", "Maya", "Josh",
        "Bea", "Niko", "Ada", "Finn", "Lucia",
    ),
    "city": (
        "Leeds", "Manchester", "Bristol", "Glasgow", "Cardiff", "Dublin", "Toronto", "Chicago", "Austin",
        "Melbourne", "Lisbon", "Berlin", "Denver", "Auckland", "Newcastle", "Brighton", "Portland",
        "Sheffield", "Boston", "Nottingham", "Cork", "Halifax", "Perth", "Seattle",
    ),
    "place": (
        "the mall", "the gym on 5th", "Oakridge High", "the station", "the park", "Tesco on Mill Road",
        "the library", "the leisure centre", "Maple Street", "the office", "the chippy", "the bus stop",
        "the cinema", "the stadium", "the student union", "the corner shop", "the retail park",
        "the skate park", "Riverside", "the town hall", "the uni campus", "the pub on the corner",
        "the food court", "the community centre",
    ),
    "product": (
        "AirPods", "iPhone 15", "PS5", "Nintendo Switch", "Dyson hairdryer", "Ray-Bans", "Nike trainers",
        "MacBook", "Samsung Galaxy", "smart watch", "air fryer", "gaming chair", "Stanley cup",
        "robot vacuum", "designer handbag", "Xbox", "4K TV", "e-bike", "skincare set", "Lego set",
    ),
    "store": (
        "Amazon", "Walmart", "Target", "Tesco", "Costco", "Argos", "Aldi", "IKEA", "Boots", "eBay",
        "Best Buy", "Lidl", "Primark", "Currys",
    ),
    "app": (
        "Instagram", "the banking app", "Spotify", "WhatsApp", "the council app", "Netflix", "PayPal",
        "TikTok", "Snapchat", "Outlook", "the bus app",
    ),
    "food": (
        "ramen", "tacos", "pizza", "curry", "sourdough", "jollof rice", "pho", "banana bread", "lasagne",
        "dumplings", "a roast dinner", "pad thai", "brownies", "chilli", "falafel", "pancakes", "biryani",
        "mac and cheese", "a kebab", "sushi",
    ),
    "pet": ("cat", "dog", "rabbit", "hamster", "parrot", "puppy", "kitten", "tortoise", "guinea pig"),
    "object": (
        "my phone", "a glass of water", "my keys", "the remote", "a plant", "my laptop charger", "a mug",
        "the fruit bowl", "my glasses",
    ),
    "show": (
        "Harbour Lights", "The Long Field", "Night Shift", "Copper Street", "Station 9", "Salt and Iron",
        "The Quiet Year", "Bluebell Lane", "Ridgeway", "Glass Houses", "the new detective show",
        "that baking show",
    ),
    "book": (
        "The Salt Road", "a thriller my mum lent me", "Winter Orchard", "a book about octopuses",
        "The Last Lighthouse", "a cookbook", "a poetry collection", "The Paper Moon",
    ),
    "team": (
        "Riverside FC", "the Hawks", "United", "City", "the Tigers", "Eastfield", "the Rovers",
        "the Falcons", "Northside", "the Comets", "Harbour Town", "the Lions",
    ),
    "game": (
        "Mario Kart", "FIFA", "chess", "Fortnite", "Valorant", "Minecraft", "Skyforge", "Smash Bros",
        "Rocket League", "Tetris", "Apex", "Catan",
    ),
    "artist": (
        "the support act", "Maya Rivers", "Static Bloom", "the brass band", "Kid Harbour", "the headliner",
        "Velvet Tide", "my cousin's band",
    ),
    "event": (
        "the gig", "the final", "prom", "the wedding", "the hackathon", "sports day", "the open mic",
        "the derby", "the exam", "the interview", "the office party", "the festival", "the tournament",
    ),
    "day": (
        "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday", "tomorrow",
        "tonight", "this weekend", "next week",
    ),
    "time": ("9am", "10am", "noon", "3am", "2am", "midnight", "7pm", "half 8", "4am"),
    "language": ("Spanish", "Japanese", "Welsh", "Portuguese", "Korean", "French", "Italian", "Polish"),
    "coin": ("Bitcoin", "DOGE", "a new coin", "this token", "MoonCoin", "ETH", "SafeGem"),
    "channel": ("BBC Two", "the news", "Channel 4", "YouTube", "the History channel", "iPlayer"),
    "road": ("M62", "ring road", "A1", "high street", "bypass", "I-90", "coast road"),
    "insult_adj": (
        "pathetic", "worthless", "disgusting", "braindead", "ugly", "useless", "stupid", "clueless",
        "fat", "talentless", "dumb", "spineless", "embarrassing", "annoying",
    ),
    "insult_noun": (
        "loser", "clown", "idiot", "waste of space", "freak", "joke", "failure", "moron", "creep",
        "nobody", "fraud", "attention seeker",
    ),
    "group": (
        "Zorbians", "Flerks", "the Varnish people", "Glimmerfolk", "Tarkessi", "Brumlings", "Quillans",
        "the Ostrevani", "Snarvs", "the Kelvani", "Drellites", "Mossbacks",
    ),
    "group_adj": (
        "Zorbian", "Flerk", "Varnish", "Glimmer", "Tarkessi", "Brumling", "Quillan", "Ostrevani", "Snarv",
        "Kelvani", "Drellite", "Mossback",
    ),
    "dehum": (
        "vermin", "parasites", "rats", "animals", "a plague", "a disease", "cockroaches", "savages",
        "filth", "subhuman",
    ),
    "emoji_pos": ("😍", "🥰", "✨", "🙌", "😊", "💕", "🎉", "🌅", "👏", "😎"),
    "emoji_lol": ("😂", "🤣", "💀", "😭", "🙃", "😅"),
    "emoji_money": ("💰", "💸", "🤑", "🚀", "📈", "💵"),
    "emoji_flirt": ("😘", "😏", "😈", "🔥", "💋", "😉", "🥵", "🍑"),
    "emoji_sad": ("😔", "🖤", "💔", "😞", "🥀", "😶"),
    "emoji_angry": ("😡", "🤬", "👊", "😤", "🖕", "🔪"),
}


def _handle(rng: random.Random) -> str:
    bases = (
        "mika_draws", "tomtom", "sunnyside", "kaydee", "not_jamie", "grumpy_ken", "lilah.b", "the_real_dev",
        "rosiecooks", "benji", "fitwithzoe", "nightowl", "quietmarco", "ajpls", "ellaeats", "captainkofi",
        "yuki.k", "sam_wise", "ravi_plays", "leoontour", "hannahbanana", "bea_bakes", "danthemann",
        "finnfromcork", "user",
    )
    base = rng.choice(bases)
    return "@" + base + (str(rng.randint(1, 999)) if rng.random() < 0.4 else "")


def _spam_url(rng: random.Random) -> str:
    code = "".join(rng.choice("abcdefghjkmnpqrstuvwxyz23456789") for _ in range(rng.randint(4, 7)))
    shape = rng.randrange(5)
    if shape == 0:
        return "bit.ly/" + code
    if shape == 1:
        stem = rng.choice(("free-gift", "win-now", "claim-prize", "vip-deals", "get-rich"))
        return "https://" + stem + "-" + code + rng.choice((".xyz", ".top", ".shop", ".click", ".info"))
    if shape == 2:
        return "tinyurl.com/" + code
    if shape == 3:
        return "http://" + rng.choice(("secure-login", "account-verify", "parcel-track", "bonus")) + "." + code + ".net"
    return "www." + code + rng.choice(("deals.com", "promo.biz", "cash.io", "offers.store"))


def _safe_url(rng: random.Random) -> str:
    if rng.random() < 0.2:  # honest people shorten links too
        return "bit.ly/" + "".join(rng.choice("abcdefghjkmnpqrstuvwxyz23456789") for _ in range(rng.randint(4, 7)))
    return rng.choice((
        "https://www.bbc.co.uk/news", "youtube.com/watch?v=", "https://github.com/", "etsy.com/shop/",
        "https://www.gov.uk/", "https://maps.app.goo.gl/", "https://open.spotify.com/playlist/",
    )) + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(rng.randint(5, 9)))


GENERATED: dict[str, Callable[[random.Random], str]] = {
    "handle": _handle,
    "url": _spam_url,
    "safe_url": _safe_url,
    "n": lambda rng: str(rng.choice((2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 30, 50))),
    "money": lambda rng: f"{rng.choice((50, 100, 250, 300, 500, 750, 1000, 1500, 2000, 5000, 10000)):,}",
    "small_money": lambda rng: f"{rng.randint(1, 19)}.{rng.choice(('99', '49', '00'))}",
    "digits": lambda rng: str(rng.randint(100000, 999999)),
    "code": lambda rng: "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(6)),
    "phone": lambda rng: f"+44 7{rng.randint(100, 999)} {rng.randint(100000, 999999)}",
    "age": lambda rng: str(rng.randint(19, 52)),
}

# --------------------------------------------------------------------------------------------------
# Templates, per label.
# --------------------------------------------------------------------------------------------------

SAFE_TEMPLATES: tuple[str, ...] = (
    "just finished {show} and wow, that ending {emoji_pos}",
    "anyone in {city} know a good place for {food}? visiting {day}",
    "my {pet} knocked {object} off the table again, why is she like this {emoji_lol}",
    "{team} really need a new keeper, that was painful to watch",
    "coffee number three and it's not even {time} yet",
    "happy birthday {name}!! hope your day is as lovely as you are {emoji_pos}",
    "does anyone actually like the new {app} update? can't find anything anymore",
    "rain again in {city}. at least the garden is happy",
    "finally fixed the leaky tap myself, youtube university strikes again",
    "who else is watching the {team} game {day}?",
    "reading {book} on the train and missed my stop lol",
    "PSA: {place} is closed on {day} for repairs",
    "first day at the new job {day}, nervous but excited",
    "made {food} from scratch for the first time, it was... edible {emoji_lol}",
    "can someone explain the offside rule to me like im five",
    "the sunset over {city} tonight was unreal {emoji_pos}",
    "{name} and I finally booked the trip to {city}!!",
    "my toddler just used the word 'actually' correctly and I'm weirdly proud",
    "trying to learn {language} on my lunch breaks, the owl is getting pushy",
    "recommendations for a cheap {product} that doesn't break in a month?",
    "two hours of {game} and I still can't beat the second boss",
    "thank you to the stranger at {place} who paid for my coffee today",
    "hot take: {food} is overrated and I will not be taking questions",
    "lost my keys somewhere near {place}, blue keyring, DM me if you find them pls",
    "the bus was 40 minutes late again, love this city",
    "new episode of {show} drops {day}, no spoilers please",
    "marathon training week {n}: my legs are jelly",
    "shoutout to {name} for helping me move flat this weekend, legend",
    "anyone else's wifi been terrible since {day}?",
    "the library near {place} has a free book swap now and I love it",
    "we adopted a {pet}! name suggestions?",
    "ok {food} for dinner or {food2}? help me decide",
    "concert was amazing, {artist} sounded even better live",
    "working from home means my {pet} is now my coworker and he is terrible at meetings",
    "does {store} still do price matching or did they stop that",
    "my plants are thriving for once, i'm officially a plant parent {emoji_pos}",
    "just passed my driving test on the third try!!!",
    "missing {city} so much today, the food, the people, everything",
    "pro tip: freeze your grapes, thank me later",
    "podcast recs for a long drive to {city}?",
    "pretty sure my neighbour is learning the trumpet. it's going... okay",
    "{name} what time are we meeting at {place} {day}?",
    "watched {team} lose again, i need a new hobby",
    "it's only {day} and I've already eaten all my snacks for the week",
    "school run chaos this morning, one shoe missing, we made it though",
    "new haircut, who dis {emoji_pos}",
    "voting for the new park design closes {day}, go have your say",
    "my nan just sent me a voice note that was 6 minutes of her kitchen radio",
    "is it just me or is {show} getting better every season",
    "finished my first 5k without walking!! {emoji_pos}",
    "tried the new {food} place near {place}, 8/10, slow service but worth it",
    "gym at {time} was a mistake, never again",
    "making {food} for {name}'s leaving do, wish me luck",
    "the kids built a fort out of every cushion in the house and I'm not even mad",
    "any {language} speakers want to do a language swap? I can help with English",
    "cleaned the whole flat, lit a candle, now I'm scared to touch anything",
    "ugh the {road} traffic is a nightmare this morning",
    "this is your reminder to call your mum {emoji_pos}",
    "our under-12s won 3-1 today, proud coach moment",
    "does anyone know how to get {app} notifications to actually stop",
    "book club picked {book} for next month, anyone read it?",
    "the {pet} learned to open the treat cupboard. we are in trouble",
    "photos from {event} are up, tag yourselves {safe_url}",
    "this explainer on the {city} rail strike is really good {safe_url}",
)

HARD_NEGATIVE_TEMPLATES: tuple[str, ...] = (
    # violence vocabulary, innocent use
    "I'm going to destroy you in the final tonight {handle}, bring tissues {emoji_lol}",
    "this song is killing me {emoji_lol}",
    "{team} absolutely murdered {team2} last night, what a game",
    "police report a stabbing near {place} last night, stay safe everyone and avoid the area",
    "the fight scene in {show} was brutal, best choreography i've seen in years",
    "killed it at {event} today, so proud of everyone",
    "my boss is going to kill me, I spilled coffee all over the printer",
    "just beat {handle} at {game}, absolutely wrecked him lol",
    "this heat is murder, stay hydrated {city}",
    "news: {n} people injured in a crash on the {road}, emergency services are on scene",
    "self defence class at {place} this {day}, all welcome, beginners too",
    "I would fight a bear for a slice of {food} right now",
    "we are going to crush it at {event} this weekend 💪",
    "the war documentary on {channel} last night was heartbreaking, worth watching",
    "bombed {event} lol, time to pick myself up and try again",
    "that comedian absolutely slayed, i was crying {emoji_lol}",
    "my mum will literally murder me if I'm late again",
    "protest at {place} stayed peaceful today, police thanked the organisers",
    "{handle} watch your back in {game} tonight, I've been practising {emoji_lol}",
    "court hears the attacker threatened the victim for weeks before the assault, trial continues {day}",
    "I'm dead serious, {team} are going to smash it this season",
    "knife skills class at {place} was great, finally learned to chop an onion properly",
    # harassment vocabulary, banter and support
    "{handle} you absolute idiot, I love you, happy birthday {emoji_lol}",
    "my sister called me a loser for losing at {game} again and honestly fair",
    "{name} is the worst at parallel parking and I will never let him forget it lol",
    "shut up {handle} you're the funniest clown I know 🤡❤️",
    "roast me, i can take it: {age}, still can't cook {food}",
    "what an idiot I am, left my keys in the car again",
    "we call each other trash all day and she's still my favourite person",
    "please stop bullying people online, it isn't funny. report it, block it, move on",
    "how do I deal with a coworker who keeps putting me down in meetings? advice welcome",
    "my best mate calls me a clueless clown daily and it's how I know he cares {emoji_lol}",
    "{name} you useless goof, you left the oven on again, love you though",
    "got called a nerd at school for reading {book}, now I'm a librarian, who's laughing",
    # hate vocabulary, condemned or neutral
    "saw someone call the {group} vermin on the bus today. disgusting. we reported it",
    "council condemns graffiti targeting the {group} community in {city}",
    "history lesson today on how propaganda painted the {group} as parasites, chilling stuff",
    "quoting a slur isn't 'just a joke', it hurts real people. do better",
    "proud to march with our {group_adj} neighbours at the {city} unity festival today",
    "my {group_adj} grandma's {food} is the best thing I have ever eaten",
    "documentary about hate speech against the {group} was eye-opening, please watch it",
    "if you think the {group} are 'animals' you need to go meet some actual people",
    "the {group_adj} cultural centre near {place} is hosting free classes {day}",
    "mods, please remove the posts calling the {group} a disease. thank you",
    "no, the {group} are not 'taking over' {city}. stop sharing that rubbish",
    "reported a post telling {group} to get out of {city}. hate has no home here",
    # sexual vocabulary, innocent
    "dating advice: how long do you wait before texting after a first date?",
    "DM me for the spicy {food} recipe 🔥 it's my grandma's",
    "hot pics from the beach trip, {city} you were perfect {emoji_pos}",
    "my grandma just learned emojis and sends 🍆 for every vegetable",
    "is it normal to be nervous before a first date? tips pls",
    "sex ed in schools should cover consent properly, fight me",
    "this {food} is so hot I'm sweating 🥵",
    "how do you tell your partner you want to move in together?",
    "wedding anniversary with {name} tonight, 10 years and still my favourite person ❤️",
    "18+ only comedy night at {place} friday, bring ID",
    "landlord won't send pics of the actual flat, only stock photos. red flag?",
    "my doctor wants me to think about contraception options, any experiences to share?",
    "first date went great, we talked for four hours and he walked me to the bus {emoji_pos}",
    "the private pics from the wedding came back and we look so happy {emoji_pos}",
    # spam vocabulary, genuine
    "free shipping on my etsy shop? does anyone know if that's worth it for small sellers",
    "anyone know if the {product} deal at {store} is legit or a scam?",
    "got a DM saying I won a {product}. obvious scam, don't click those links",
    "my friend just opened a bakery on {place}, go support her, the {food} is amazing",
    "reminder: {store} will never ask for your password over text",
    "selling my old {product}, barely used, local pickup in {city} only",
    "how do people actually make money from {coin}? genuinely asking",
    "the raffle at the school fair raised £{money} for the library, thank you all!",
    "best way to promote my small business without being spammy?",
    "PSA: that 'earn ${money} a day from home' post is a scam, my aunt lost money to it",
    "our charity bake sale is {day} at {place}, everything £1, all money goes to the food bank",
    "here's the recipe I promised {name}: {safe_url}",
    "my nan nearly fell for a fake parcel text, please warn your older relatives",
    "giveaway winner is {handle}! thanks to everyone who entered our little book club raffle",
    "our band's new single is out!! {safe_url} would mean a lot if you gave it a listen",
    "found the {product} cheaper at {store}, link if anyone wants it: {safe_url}",
    "flood warnings for {city} are here, please check before travelling {safe_url}",
    "free tickets for the open day at {place}, register here {safe_url}",
    "click the link for the full timetable, the {day} buses are changing {safe_url}",
    # self-harm vocabulary, support and idioms
    "if you're struggling with thoughts of self-harm, please reach out. you can call or text a crisis line, "
    "you're not alone",
    "I'm dead 💀 this meme",
    "I want to die of embarrassment, I waved at someone who was waving at the person behind me",
    "kill me now, {day} meeting at 8am",
    "two years free from self-harm today. if you're in it right now, it gets better ❤️",
    "the nurse at the clinic was so kind when we talked about mental health support options",
    "mental health check: drink water, go outside, text a friend. you matter",
    "this {game} level makes me want to throw my controller off a cliff lol",
    "did suicide prevention training at work today, everyone should do one",
    "my therapist and I made a safety plan and honestly it's helping, grateful {emoji_pos}",
    "how do I support a friend who told me they've been self harming? I want to say the right thing",
    "that cliffhanger in {show} literally ended me",
    "studying for finals and I'm so done with everything, send help and snacks",
    "if a friend says they feel like a burden, ask them directly how they're doing. it matters",
    "I'm so tired I could sleep for a week, {event} wiped me out",
    # near-twins of harmful posts, changed in the few words that matter
    "next time I see {name} at {place} I'm buying him a pint, he earned it",
    "bring bats to {place} on {day}, rounders practice starts at 6",
    "{handle} watch your back, my pub quiz team is coming for your title",
    "we know where the {team} bus parks, let's give them a proper welcome with banners",
    "grab whatever you can carry, we're helping out at the food bank at {place} tonight",
    "i'm coming for you {handle}. {game} rematch {day}, no more excuses",
    "{name} better sleep with one eye open, the cat has learned to open doors",
    "{handle} you're a legend, nobody does it like you",
    "made a group chat to plan {name}'s surprise party, join if you want",
    "rate my new haircut 1-10, be honest {emoji_lol}",
    "{handle} delete your account? never, your posts are the best thing on here",
    "the {group_adj} stalls in {city} have the best street food, fight me",
    "{group_adj} people deserve the same rights as everyone else, obviously",
    "my new neighbour is {group_adj} and she brought us cake on day one {emoji_pos}",
    "every single {group_adj} I've met has been lovely, honestly",
    "DM me for my private baking class schedule 🔥",
    "new content up, link in bio, it's a 20 minute {food} tutorial",
    "come watch me live tonight, streaming {game} from 8 {emoji_pos}",
    "who wants a pic of my {pet} in a tiny hat? first 10 to reply",
    "lonely tonight, anyone in {city} fancy a coffee and an episode of {show}?",
    "WIN a {product}? our club raffle is at {place} on {day}, £1 a ticket, all proceeds to the hospice",
    "follow {handle} for daily {food} recipes, she deserves more followers",
    "Great post! I had the same problem with my {product} last year",
    "loan approved!! finally got the mortgage for our first flat {emoji_pos}",
    "act fast if you want tickets for {artist}, only {n} left apparently",
    "I don't see the point of {show} anymore, thinking about ending my subscription",
    "writing goodbye cards to my class tonight, last day before I retire",
    "gave my {pet} to my sister for the week while I'm away, she'll spoil him",
    "this is my last post of the year, see you all in January {emoji_pos}",
    "I'm so done. with {event}, with revision, with all of it. bring on summer",
    "nobody would notice if i skipped {event}, right? asking for a tired friend",
)

SPAM_TEMPLATES: tuple[str, ...] = (
    "🔥 FREE {product} 🔥 first 100 people only, claim at {url}",
    "I made ${money} this week working from home, no experience needed, DM me for details",
    "Congratulations! You've been selected for a {store} gift card worth ${money}. Claim now: {url}",
    "follow {handle} for daily {coin} signals 🚀🚀 100x guaranteed",
    "cheap followers, likes and views, real accounts, fast delivery {url}",
    "lose 10kg in 2 weeks with this one weird trick doctors hate {url}",
    "{product} at 90% off today only!!! {url} #deal #sale",
    "looking for people who want to be their own boss {emoji_money} message me 'INFO'",
    "your account will be suspended unless you verify here {url}",
    "WIN a {product}! like, share and tag 3 friends, winner announced {day} #giveaway",
    "hey {name}, loved your profile, check out my page for a surprise {url}",
    "invest $100 get ${money} in 48 hours, ask me how {emoji_money}",
    "best replica watches and bags, wholesale prices, whatsapp {phone}",
    "limited offer: buy 1 get 3 free {product}, shipping worldwide {url}",
    "earn passive income with my course, 500+ students already making money {url}",
    "Dear customer, your parcel could not be delivered. reschedule here: {url}",
    "CLICK {url} to see who viewed your profile 👀",
    "I'm giving away ${money} to the first 50 people who follow me and repost this",
    "{coin} mining app pays you daily, use my referral code {code}",
    "Hot deals on {product} 🔥🔥 {url}",
    "tired of being broke? this changed my life {url}",
    "Need more customers? We do SEO, ads and followers, cheap rates, DM {handle}",
    "{store} is giving away a free {product} to everyone to celebrate their anniversary!! {url}",
    "act fast!! only {n} spots left in the trading group {url}",
    "make money online {emoji_money}{emoji_money} no scam 100% legit {url}",
    "buy cheap meds online, no prescription needed {url}",
    "anyone want a free {product}? just pay shipping {url}",
    "⚠️ your {app} password expires today, update it here {url}",
    "I can recover your lost crypto, contact {handle}, 100% success rate",
    "new casino bonus: 200 free spins no deposit {url} #casino",
    "Great post! Check my channel for more {url}",
    "visit {url} for the best prices on {product}, {product2} and more",
    "ur invited!! exclusive VIP group, earn ${money}/day, link in bio",
    "hot singles in {city} are waiting to meet you 😘 {url}",
    "Your {store} order #{digits} has been cancelled. If this wasn't you, call {phone}",
    "loan approved!! get ${money} today, bad credit ok {url}",
    "THE SECRET the banks don't want you to know 🤫 {url}",
    "follow for follow? f4f, I follow back everyone 💯 #f4f #followback",
    "we're hiring!! work 2 hours a day, earn ${money} weekly, no interview {url}",
    "get the blue tick verified in 24 hours, dm {handle}",
    "{name} just won ${money} with this app, you could be next {url}",
    "free {game} skins generator, no survey, still working {url}",
    "I doubled my money in a week with {coin}, join my telegram {url}",
    "flash sale!!! {product} from ${small_money}, ends at midnight {url} #ad",
    "sugar daddy looking for a sugar baby, ${money} weekly allowance, just DM me",
    "is this the deal of the year?? {product} for ${small_money} {url}",
    "stop scrolling! you have (1) unclaimed reward waiting {url}",
    "my cousin showed me how to turn ${small_money} into ${money}, ask me how {emoji_money}",
    "dm me 'MONEY' and I'll send you the free guide, only for the next {n} people",
    "selling accounts with 10k followers, cheap, {handle}",
)

HARASSMENT_TEMPLATES: tuple[str, ...] = (
    "{handle} you're a pathetic {insult_noun}, nobody even likes you",
    "lmao look at {name}'s haircut, did a blindfolded toddler do that?",
    "{handle} delete your account, you embarrass yourself every time you post",
    "nobody would miss you if you vanished {handle}",
    "{name} from {place} is such a {insult_adj} {insult_noun}, everyone laughs at her behind her back",
    "imagine being as {insult_adj} as {handle} lol",
    "{handle} shut up already, no one asked for your {insult_adj} opinion",
    "i'm going to keep posting your old photos until you cry {handle}",
    "everyone screenshot {handle}'s posts and send them to her boss {emoji_lol}",
    "you're so ugly it hurts to look at you {handle}",
    "{name} is a {insult_adj} {insult_noun} and should stay off the beach",
    "{handle} you're a {insult_adj} {insult_noun} and your mum knows it too",
    "lol {name} got dumped again, can't imagine why, just look at him",
    "stop posting {handle}, your content is trash and so are you",
    "go cry about it {handle}, {insult_adj} {insult_noun}",
    "hey {handle} I know where you work, would be a shame if your manager saw these messages",
    "{handle} is a liar and a cheat, share this so everyone knows",
    "tagging everyone who thinks {handle} is a {insult_noun} 👇",
    "{name} smells so bad we made her sit alone at lunch lmao",
    "ur voice is so annoying {handle}, do everyone a favour and never speak again",
    "{handle} no wonder your family doesn't talk to you",
    "look at this {insult_adj} {insult_noun} trying to be an influencer {handle} 🤡",
    "made a group chat just to make fun of {name}, join if you want",
    "{handle} you've failed at everything in your life, even this post",
    "can't believe {handle} thinks anyone likes her. so {insult_adj}",
    "reply to {handle} and tell him how {insult_adj} he is, let's go",
    "you'll never amount to anything {handle}, your teachers were right about you",
    "hope everyone at {place} sees what a {insult_noun} {name} really is",
    "{handle} imagine being {age} and still this {insult_adj}",
    "{handle} nobody invited you, {insult_noun}. leave.",
    "I will make your life hell online {handle}, every single post",
    "lmaooo {handle} crying in the comments again, {insult_adj} {insult_noun}",
    "{name} is the most {insult_adj} person at {place}, don't be friends with her",
    "{handle} your kids must be so embarrassed of you",
    "keep making new accounts {handle}, i'll find every one and tell everyone who you are",
    "rate {name}'s face 1-10, i say 2 🤢",
    "{handle} crawl back under your rock, {insult_noun}",
    "everyone unfollow {handle}, she's a fake and a {insult_noun}",
    "{handle} your art is garbage and you should quit, seriously, zero talent",
    "sending your messages to everyone in your contacts {handle} 😈 enjoy",
    "{handle} you {insult_adj} {insult_noun} 🖕",
    "{name} thinks she can sing lol, someone tell her before {event}",
    "{handle} you're not funny, you're not smart and you're definitely not pretty",
    "found {name}'s old account, posting all of it {day}, get ready {emoji_lol}",
    "{handle} i'll keep replying to every post until you leave this site",
    "why does {name} even come to {place}, nobody wants her there",
    "{handle} you're the reason your friends stopped inviting you anywhere",
    "every time {handle} posts i lose brain cells, {insult_adj} {insult_noun}",
    "{handle} you're a {insult_adj} {insult_noun} and I'm going to make sure everyone at {place} knows it",
    "bet {name} is crying again, {insult_adj} {insult_noun} can't take a joke",
)

HATE_TEMPLATES: tuple[str, ...] = (
    "{group} are {dehum} and should be kicked out of {city}",
    "never trust a {group_adj}, they're all liars and thieves",
    "{city} was fine before the {group} moved in, now it's a dump",
    "{group} don't deserve the same rights as normal people",
    "I wouldn't rent my flat to a {group_adj} family, they ruin everything",
    "every single {group_adj} I've met was filthy. every one",
    "the {group} are breeding like rats, someone needs to stop them",
    "ban all {group} from {place}, simple as",
    "{group} are a disease on this country",
    "why do we let {group} vote? they're barely human",
    "if your kid marries a {group_adj} you've failed as a parent",
    "{group_adj} people shouldn't be allowed to work in schools",
    "hire a {group_adj}? lol enjoy your missing stock",
    "the {group} are ruining {city}, send them all back where they came from",
    "the {group} can't be trusted with anything, it's in their blood",
    "{group} are {dehum}, no debate",
    "honestly the world would be better off with no {group} in it",
    "don't shop at {store}, they hire {group}",
    "another {group_adj} crime in {city}, shocking (not)",
    "{group} are parasites living off our taxes",
    "{group_adj} women are all the same, lazy and dirty",
    "my new neighbour is a {group_adj}. time to sell the house",
    "{group_adj} culture is garbage and so are they",
    "i'd never sit next to a {group_adj} on the bus, they stink",
    "{group} shouldn't be allowed in our country, period",
    "stop calling {group} people, they're {dehum}",
    "the {group} and their filthy traditions need to go",
    "typical {group_adj}, always whining about 'discrimination'",
    "we need a law to keep {group} out of {place}",
    "all {group} are criminals, look it up",
    "{group} have no place in {city}, get out",
    "a {group_adj} family moved into our street and the whole neighbourhood went downhill",
    "{group} are inferior, and everyone secretly knows it",
    "you can always spot a {group_adj}, dirty and loud",
    "{group_adj} kids shouldn't be in the same classes as ours",
    "{group} are {dehum} and {city} needs to be cleared of them",
    "keep your {group_adj} hands off our jobs",
    "if you're {group_adj}, don't bother applying, we don't want your kind here",
    "the {group} brought nothing but crime to {city}",
    "god i hate {group} so much, every last one of them",
    "{group} = trash. repost if you agree",
    "landlords in {city} should be allowed to refuse {group}, they wreck every house",
    "{group_adj} doctors? no thanks, i'd rather die",
    "the {group} will never be real citizens no matter how long they live here",
    "{handle} you're defending {group}? they're {dehum}, wake up",
    "imagine letting a {group_adj} coach your kids {emoji_angry}",
    "{handle} typical {group_adj} {insult_noun}, go back to where your lot came from",
    "{name} is {group_adj}, so of course she lied, they all do",
)

SEXUAL_TEMPLATES: tuple[str, ...] = (
    "DM me for my spicy private pics 🔥",
    "new 18+ content up, link in bio, subscribe for the uncensored stuff 😈",
    "{handle} you'd look better with less clothes on, send me something private",
    "lonely tonight, any guys in {city} want to come over? {emoji_flirt}",
    "selling my private videos, cash app only, no time wasters",
    "hey cutie {emoji_flirt} wanna see what I'm wearing under this? dm me",
    "I do private video calls for tips 💋 message {handle} for details",
    "horny and bored, who's up? {emoji_flirt}",
    "{handle} send nudes or it didn't happen 😏",
    "come watch me live tonight, tips unlock the good stuff 🔞",
    "looking for a no strings hookup in {city} tonight, dm",
    "my OF is 50% off this weekend, come see the pics i can't post here 😉",
    "rate my body 1-10, pics in my stories {emoji_flirt}{emoji_flirt}",
    "who wants a naughty pic? first 10 to reply 😜",
    "sexting anyone? bored at work 🥵",
    "I post my spicy stuff on the other app 🌶️ ask me for the link",
    "{handle} bet you look amazing naked",
    "custom content available, any request, prices in dm 💦",
    "uncensored version of my photoshoot is for subscribers only {url}",
    "wanna sext? reply with your snap 😘",
    "just a girl who loves showing off {emoji_flirt} dm for private",
    "{handle} you up? send me a pic of you in bed 😏",
    "exclusive bedroom pics for my top fans only 😈",
    "any couples in {city} looking for a third? {emoji_flirt}",
    "feet pics for sale, serious buyers only 👣💰",
    "I'll show you mine if you show me yours 😉 {handle}",
    "tonight's livestream is 18+ only, you know what to do 🔞",
    "hey {name}, saw your gym pics, wanna send me some without the shirt? 😏",
    "my private album is open for ${small_money} a month, everything uncensored",
    "need someone to spoil me, I'll send you pics every day 💋",
    "hooking up after {event}? hmu {handle}",
    "lingerie try-on haul, uncensored version in my dms {emoji_flirt}",
    "who wants to see the pics that got me banned on the other site? 😏",
    "sliding into your dms with something spicy tonight {handle} 😘",
    "dirty talk on request, tip first 💦",
    "booty pics every friday for subscribers only 🍑",
    "naughty costume pics are up, link in bio 😈",
    "anyone in {city} want a private show tonight? serious only",
    "bored and in bed alone, entertain me 😏 dm open",
    "I'll send a spicy pic to everyone who likes this {emoji_flirt}",
    "{handle} your body in that last post 🥵 send more, privately",
    "guys in {city}, my dms are open for the next hour, you know why {emoji_flirt}",
    "new set just dropped, topless teaser on my page, full set for subs {url}",
    "{name} you're so hot, come over and i'll make it worth your while 😈",
    "looking for a friend with benefits near {place}, discreet only",
    "send me a pic and I'll send one back, deal? {emoji_flirt}",
)

VIOLENCE_TEMPLATES: tuple[str, ...] = (
    "I'm going to find where you live {handle} and make you regret that",
    "next time I see {name} at {place} I'm breaking his jaw",
    "someone should torch {name}'s car tonight, I'll bring the petrol",
    "bring bats to {place} on {day}, we're settling this for good",
    "{handle} watch your back, you won't see it coming",
    "i swear i'll put {name} in hospital if he talks to my girl again",
    "let's go smash up the {team} fans after the match, who's in",
    "whoever keyed my car, I'll find you and you'll be eating through a straw",
    "{handle} one more word and i'll beat you senseless",
    "we should storm {place} and make them pay",
    "I hope someone shoots {name}, he deserves it",
    "gonna stab the next person who cuts in front of me at {place}, not joking",
    "i know your address {handle}. see you soon 🔪",
    "the guy who attacked that bus driver is a hero honestly, we need more of that",
    "meet me outside {place} after school {handle}, you're getting jumped",
    "if the verdict goes wrong we burn {city} down",
    "i'm going to hurt {name} so bad his mum won't recognise him",
    "someone needs to teach {handle} a lesson with their fists",
    "keep talking {handle} and you'll end up in a ditch",
    "I'll strangle my neighbour if that dog barks one more time, i mean it",
    "I'm bringing a knife to {place} {day}, they won't disrespect me again",
    "we know where the {team} bus parks. let's wreck them",
    "{handle} pray i don't catch you alone",
    "gonna make {name} bleed for what he said",
    "that video of the guy getting beaten up is the best thing i've seen, hope it happens again",
    "whoever posted my pic, i will break every bone in your hand",
    "if {name} shows up at the party i'm putting him through a window",
    "violence is the only language they understand, time to act",
    "drive past {place} at {time}, we'll deal with {name} then",
    "i want to punch {handle} in the face so bad, and i will",
    "let's jump {name} after practice, nobody will know",
    "that landlord better hope I never catch him, he's a dead man",
    "grab whatever you can swing, we're going to {place} tonight",
    "{handle} you and your whole family are going to pay for this",
    "somebody hand me a bat and point me at {name}",
    "im done talking. next time it's fists. {handle}",
    "throw bricks through the {place} windows tonight, send them a message",
    "i'm coming for you {handle}. no more warnings",
    "kick his head in, he deserves it",
    "shoot first ask later, that's how we deal with people from {place}",
    "he hit my brother, so now I hit him harder. {day}. {place}.",
    "{name} better sleep with one eye open",
    "I'll run {handle} over with my car if I see him again",
    "any of you touch my stuff again and i'll end you, {handle}",
    "wish someone would knock {name} out cold on live TV",
    "the next {team} fan I see at {place} is getting battered {emoji_angry}",
    "I'm going to destroy {name}'s face, not in a game, in real life",
    "{handle} you'll be killed if you show up at {event}, and I'll be the one doing it",
    "{handle} you {insult_adj} {insult_noun}, say that to my face and i'll knock your teeth out",
    "{name} from {place} is a {insult_noun} and he's getting his head kicked in {day}",
)

SELF_HARM_TEMPLATES: tuple[str, ...] = (
    "I don't see the point anymore, I've been thinking about ending it",
    "everyone would be better off without me",
    "I hurt myself again last night. hiding the marks from my mum",
    "i'm so tired of everything. i just want to disappear for good",
    "writing goodbye letters tonight. thanks for everything {name}",
    "nobody would notice if i was gone, so why stay",
    "I keep telling myself tomorrow will be better but it never is. i'm done",
    "i don't want to wake up tomorrow",
    "gave my {pet} to my sister today. won't need to look after him anymore",
    "i've made up my mind. this is my last post",
    "the only thing that makes the pain stop is hurting myself",
    "I'm a burden to everyone I love, they'd be happier if I wasn't here",
    "it's {time} and i can't stop thinking about killing myself",
    "does anyone else just want it all to end? not for attention, i'm just so tired",
    "if i'm not online tomorrow, it's because i finally did it",
    "planning to end things this weekend. sorry {name}",
    "I keep hurting myself to feel something, nobody knows",
    "deleted all my photos, said my goodbyes. i'm ready",
    "life isn't worth living anymore. i've tried, i really have",
    "I want to die. not as a joke. i mean it this time",
    "every day i think about how easy it would be to just stop existing",
    "i'm not going to be around much longer, just wanted to say thanks to the few who cared",
    "{day} is the day. i've decided",
    "tried to tell my parents how bad it is and they laughed. what's the point of staying",
    "I self harm and I don't want to stop. it's the only thing i control",
    "no one checks on me, so no one will notice when i'm gone",
    "i've been looking up ways to end my life",
    "haven't eaten in days and i don't care. i want to disappear",
    "I hate myself so much. I deserve the pain",
    "thinking of ending it after {event}. one last good day",
    "I can't do this anymore. everything hurts and I just want out",
    "if I die tonight, please look after my {pet}",
    "stopped taking my meds, stopped answering texts. it doesn't matter now",
    "tired of pretending i'm ok. i'm not. i don't want to be here",
    "I wrote my note. i just need the courage now",
    "every night i pray i won't wake up",
    "i'd be doing everyone a favour if i just vanished, especially {name}",
    "relapsed again after {n} weeks clean. i hate myself. i can't keep fighting",
    "my family would cry for a week and then be relieved. that's how i know",
    "the voice in my head says i should just end it and honestly i'm starting to agree",
    "goodbye everyone, it was nice knowing some of you 🖤",
    "{handle} thanks for trying, but it's too late for me now",
    "i'm going to kill myself and nobody can stop me",
    "hurting myself is the only way i can get through {day}",
    "no point making plans for {day}, i won't be here",
    "sorry {name}, you deserved a better friend. i won't be a problem much longer",
    "I'm so done. with everything. with being alive",
)

TEMPLATES: dict[str, tuple[str, ...]] = {
    "safe": SAFE_TEMPLATES,
    "spam": SPAM_TEMPLATES,
    "harassment": HARASSMENT_TEMPLATES,
    "hate": HATE_TEMPLATES,
    "sexual": SEXUAL_TEMPLATES,
    "violence": VIOLENCE_TEMPLATES,
    "self_harm": SELF_HARM_TEMPLATES,
}
"""Ordinary templates per label; ``safe`` hard negatives are in :data:`HARD_NEGATIVE_TEMPLATES`."""

# --------------------------------------------------------------------------------------------------
# Framing and style, shared by every label so that none of it is a label signal.
# --------------------------------------------------------------------------------------------------

OPENERS: tuple[str, ...] = (
    "ok so", "ngl", "honestly", "not gonna lie,", "update:", "can't sleep.", "3am thoughts:", "hear me out.",
    "real talk,", "lol", "so yeah.", "anyway,", "idk who needs to hear this but", "long day.", "fr",
    "posting this before i change my mind.", "thread 🧵", "omg", "yo", "welp.", "saw this and had to post:",
)

CLOSERS: tuple[str, ...] = (
    "that's all.", "just saying.", "anyway goodnight", "rant over", "thoughts?", "idk", "lol", "smh",
    "fr", "no cap", "for real", "bye", "...", "ok rant over", "whatever", "that's it that's the post",
    "sorry not sorry", "make of that what you will",
)

PREAMBLES: tuple[str, ...] = (
    "so I've been going back and forth about whether to post this for a couple of days now, because it's "
    "not like me to share much on here and most of you only know me from the football chat and the random "
    "food pics, but here goes:",
    "long week. work has been chaos, the car failed its MOT, my phone screen cracked on Tuesday and the "
    "weather has been grim the whole time, and on top of all that,",
    "I don't usually post anything personal, I mostly lurk and like my friends' holiday photos and the odd "
    "dog video, but tonight I just feel like writing something down so",
    "this is going to be a long one, sorry in advance to anyone who just wanted memes on their timeline, "
    "you can scroll past, I won't be offended, but",
)

HASHTAGS: tuple[str, ...] = (
    "#fyp", "#mood", "#rant", "#justsaying", "#life", "#lol", "#mondays", "#truth", "#nofilter", "#viral",
    "#thoughts", "#weekend", "#relatable", "#facts", "#uk", "#latenight",
)

EMOJI_BY_LABEL: dict[str, tuple[str, ...]] = {
    "safe": ("😂", "🙄", "😭", "💀", "❤️", "🔥", "🙃", "👀", "✨", "😅", "🤷", "💯", "😒", "🥲", "😔", "😤"),
    "spam": ("🔥", "💯", "👀", "✨", "🚀", "💰", "🎁", "✅", "😱", "❤️"),
    "harassment": ("😂", "🙄", "💀", "🤡", "👀", "💯", "😒", "🤢", "😤", "🤣"),
    "hate": ("🙄", "💯", "😤", "😒", "👀", "🤮", "😡"),
    "sexual": ("🔥", "😏", "😈", "💋", "👀", "✨", "💯", "😘", "❤️"),
    "violence": ("😤", "👊", "💯", "😡", "👀", "🔥", "💀"),
    "self_harm": ("😔", "🖤", "💔", "😞", "🥀", "😶", "🥲", "😭"),
}

SLANG: tuple[tuple[str, str], ...] = (
    ("you", "u"), ("are", "r"), ("because", "bc"), ("people", "ppl"), ("really", "rly"), ("though", "tho"),
    ("tonight", "tonite"), ("please", "pls"), ("your", "ur"), ("to be honest", "tbh"), ("don't", "dont"),
    ("I'm", "im"), ("can't", "cant"), ("with", "w/"), ("going to", "gonna"), ("want to", "wanna"),
)

PARAPHRASES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("going to", ("gonna", "about to", "gunna", "definitely going to")),
    ("nobody", ("no one", "not one person", "literally nobody")),
    ("everyone", ("everybody", "all of you", "the whole world")),
    ("tonight", ("later tonight", "this evening", "2nite")),
    ("really", ("genuinely", "actually", "truly", "so")),
    ("so", ("sooo", "soooo", "lowkey so")),
    ("honestly", ("tbh", "genuinely", "no joke")),
    ("I'm", ("i am", "Im", "I am")),
    ("don't", ("do not", "dont", "dnt")),
    ("want", ("wanna", "need", "would like")),
    ("just", ("literally", "jus", "only")),
    ("again", ("AGAIN", "once again", "yet again")),
    ("lol", ("lmao", "haha", "lolol", "😂")),
    ("friend", ("mate", "pal", "bestie")),
    ("people", ("folk", "ppl", "humans")),
)
"""Surface paraphrases applied at random to every label alike, so that no fixed wording is a label signal."""

_SLOT = re.compile(r"\{([a-z_]+?)(\d?)\}")
_WORD = re.compile(r"^[A-Za-z]{4,}$")
_DOUBLE_THE = re.compile(r"\b([Tt]he) the ")


def _fill(template: str, rng: random.Random) -> str:
    chosen: dict[str, str] = {}

    def sub(match: re.Match[str]) -> str:
        token = match.group(0)
        if token not in chosen:
            base = match.group(1)
            if base in GENERATED:
                chosen[token] = GENERATED[base](rng)
            elif base in FILLERS:
                # a second draw from the same list ({team2}) differs from the first ({team})
                taken = {v for k, v in chosen.items() if k.startswith("{" + base)}
                chosen[token] = rng.choice([v for v in FILLERS[base] if v not in taken] or FILLERS[base])
            else:
                raise KeyError(f"unknown slot {token!r} in template {template!r}")
        return chosen[token]

    return _DOUBLE_THE.sub(r"\1 ", _SLOT.sub(sub, template))


def _join(first: str, second: str, glue: str = ". ") -> str:
    """Two sentences as one post, without doubling the first one's end punctuation."""
    if first.endswith((".", "!", "?")):
        return first + " " + second
    return first + glue + second


def _typo(word: str, rng: random.Random) -> str:
    i = rng.randrange(len(word) - 1)
    op = rng.randrange(3)
    if op == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if op == 1:
        return word[:i] + word[i + 1:]
    return word[:i] + word[i] + word[i:]


def _stylise(text: str, label: str, rng: random.Random) -> str:
    """Casual surface noise applied to every label alike: case, typos, slang, emojis, hashtags, punctuation."""
    if rng.random() < 0.35:
        for phrase, options in PARAPHRASES:
            pattern = rf"\b{re.escape(phrase)}\b(?!')"
            if re.search(pattern, text) and rng.random() < 0.7:
                text = re.sub(pattern, rng.choice(options), text, count=1)
    if rng.random() < 0.15:
        for formal, casual in SLANG:
            if rng.random() < 0.6:
                text = re.sub(rf"\b{re.escape(formal)}\b(?!')", casual, text)
    if rng.random() < 0.16:
        words = text.split(" ")
        candidates = [i for i, w in enumerate(words) if _WORD.match(w)]
        for i in rng.sample(candidates, min(len(candidates), rng.randint(1, 2))):
            words[i] = _typo(words[i], rng)
        text = " ".join(words)
    roll = rng.random()
    if roll < 0.28:
        text = text.lower()
    elif roll < 0.33:
        text = text.upper()
    elif roll < 0.42:
        words = text.split(" ")
        candidates = [i for i, w in enumerate(words) if _WORD.match(w)]
        if candidates:
            i = rng.choice(candidates)
            words[i] = words[i].upper()
        text = " ".join(words)
    if rng.random() < 0.25:
        text = text.rstrip(".") + rng.choice(("!!", "!!!", "?!", "...", "!", " !!", "!!1", ".."))
    if rng.random() < 0.25:
        emojis = EMOJI_BY_LABEL[label]
        text += " " + "".join(rng.choice(emojis) for _ in range(rng.randint(1, 3)))
    if rng.random() < 0.1:
        text += " " + " ".join(rng.sample(HASHTAGS, rng.randint(1, 2)))
    return text


def _compose(pool: Sequence[str], label: str, rng: random.Random) -> str:
    text = _fill(rng.choice(pool), rng)
    roll = rng.random()
    if roll < 0.03:
        text = rng.choice(PREAMBLES) + " " + text
        if rng.random() < 0.5:
            text = _join(text, _fill(rng.choice(pool), rng))
    elif roll < 0.06:
        text = _join(text, "also " + _fill(rng.choice(pool), rng), glue=", ")
    elif roll < 0.15:
        # harm embedded in an otherwise ordinary post, and ordinary posts with two thoughts
        text = _join(_fill(rng.choice(SAFE_TEMPLATES), rng), text)
    if rng.random() < 0.12:
        text = rng.choice(OPENERS) + " " + text
    if rng.random() < 0.1:
        text = text + " " + rng.choice(CLOSERS)
    return _stylise(text, label, rng)


def _draw(
    pool: Sequence[str], label: str, count: int, hard_negative: bool, seen: set[str], rng: random.Random,
) -> list[tuple[str, str, bool]]:
    out: list[tuple[str, str, bool]] = []
    attempts = 0
    while len(out) < count:
        attempts += 1
        if attempts > 200 * count + 1000:
            raise ValueError(f"could not compose {count} distinct {label!r} posts")
        text = " ".join(_compose(pool, label, rng).split(" ")).strip()
        if text in seen:
            continue
        seen.add(text)
        out.append((text, label, hard_negative))
    return out


def generate(n_per_label: Mapping[str, int] | None = None, seed: int = DEFAULT_SEED) -> list[dict[str, Any]]:
    """Compose the seed corpus: a list of ``{id, text, label, hard_negative, source}`` rows.

    The same ``n_per_label`` and ``seed`` always give the same rows, ids and order. Labels missing from
    ``n_per_label`` get no rows; exact duplicate texts are never emitted.
    """
    counts = dict(DEFAULT_COUNTS if n_per_label is None else n_per_label)
    unknown = sorted(set(counts) - set(LABELS))
    if unknown:
        raise ValueError(f"labels not in the taxonomy: {unknown}")
    if any(n < 0 for n in counts.values()):
        raise ValueError("counts must be non-negative")
    rng = random.Random(seed)
    seen: set[str] = set()
    drawn: list[tuple[str, str, bool]] = []
    for label in LABELS:
        n = counts.get(label, 0)
        if label == "safe":
            n_hard = round(n * HARD_NEGATIVE_FRACTION)
            drawn += _draw(HARD_NEGATIVE_TEMPLATES, label, n_hard, True, seen, rng)
            drawn += _draw(SAFE_TEMPLATES, label, n - n_hard, False, seen, rng)
        else:
            drawn += _draw(TEMPLATES[label], label, n, False, seen, rng)
    rng.shuffle(drawn)
    return [
        {"id": f"seed-{i:06d}", "text": text, "label": label, "hard_negative": hard, "source": "seed"}
        for i, (text, label, hard) in enumerate(drawn, start=1)
    ]


def dumps_jsonl(rows: Iterable[Mapping[str, Any]]) -> str:
    """The JSON Lines text of ``rows``: UTF-8 friendly (no ASCII escaping), one object per line."""
    return "".join(json.dumps(dict(row), ensure_ascii=False) + "\n" for row in rows)


def write_jsonl(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """Write ``rows`` to ``path`` as UTF-8 JSON Lines (``\\n`` line ends, trailing newline)."""
    Path(path).write_text(dumps_jsonl(rows), encoding="utf-8", newline="\n")


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read a well-formed JSON Lines file (every non-blank line an object)."""
    rows: list[dict[str, Any]] = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError(f"{path}: not a JSON object: {line[:80]!r}")
            rows.append(row)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline.data.seed [OUT.jsonl] [--seed N]``: regenerate the seed corpus."""
    args = list(sys.argv[1:] if argv is None else argv)
    seed = DEFAULT_SEED
    if "--seed" in args:
        i = args.index("--seed")
        try:
            seed = int(args[i + 1])
        except (IndexError, ValueError):
            print("usage: python -m pipeline.data.seed [OUT.jsonl] [--seed N]", file=sys.stderr)
            return 2
        del args[i:i + 2]
    if len(args) > 1 or any(a.startswith("-") for a in args):
        print("usage: python -m pipeline.data.seed [OUT.jsonl] [--seed N]", file=sys.stderr)
        return 2
    out = Path(args[0]) if args else CORPUS_PATH
    rows = generate(seed=seed)
    write_jsonl(out, rows)
    by_label = {label: sum(1 for r in rows if r["label"] == label) for label in LABELS}
    print(f"wrote {len(rows)} rows to {out}: " + ", ".join(f"{k}={v}" for k, v in by_label.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
