"""A labelled corpus of user questions and assistant answers on six topics, assembled from
hand-written templates and slot lists (real English, no model involved). Each topic yields
thousands of distinct questions, enough for disjoint reference and current windows of
500. Used by the tests and by bench/bench_drift.py."""

from __future__ import annotations

import itertools
import random

TOPICS: dict[str, dict[str, list[str]]] = {
    "cooking": {
        "templates": [
            "How long should I {cook} {food} {extra}?",
            "What is the best way to {cook} {food} so it stays juicy?",
            "Can I {cook} {food} without {tool}, and what changes if I do?",
            "My {food} always turns out {problem} when I {cook} it. What am I doing wrong?",
            "Which spices go well with {food} when I {cook} it for {people}?",
            "Give me a quick weeknight recipe with {food} and {side}.",
            "Is it safe to {cook} frozen {food} directly, or should I thaw it first?",
            "What temperature should the {tool} be to {cook} {food}?",
        ],
        "cook": ["roast", "bake", "grill", "braise", "pan-fry", "steam", "poach", "slow-cook", "sear", "smoke"],
        "food": ["chicken thighs", "salmon fillets", "pork shoulder", "sourdough bread", "brown rice", "lentils",
                 "a whole turkey", "beef brisket", "tofu", "sweet potatoes", "cauliflower", "lamb chops",
                 "shrimp", "eggplant", "pizza dough", "risotto"],
        "extra": ["at 180 degrees", "in a cast iron pan", "for a dinner party", "on a charcoal grill",
                  "in an air fryer", "in a Dutch oven", "at high altitude", "in a convection oven"],
        "tool": ["an oven", "a thermometer", "a stand mixer", "a pressure cooker", "a wok", "a grill",
                 "a sous vide stick", "a baking stone"],
        "problem": ["dry", "soggy", "rubbery", "bland", "burnt on the outside", "undercooked in the middle"],
        "people": ["two people", "a family of five", "a picnic", "meal prep", "a holiday dinner"],
        "side": ["garlic butter", "roasted vegetables", "a lemon herb sauce", "couscous", "a green salad"],
    },
    "tax": {
        "templates": [
            "Can I deduct {expense} on my {year} tax return if I am {status}?",
            "How do I report {income} on my {form}?",
            "What is the deadline to file {form} if I am {status}?",
            "Do I owe capital gains tax when I sell {asset} after {period}?",
            "How much of {expense} is deductible for {status} taxpayers?",
            "Will {income} push me into a higher tax bracket in {year}?",
            "What records should I keep for {expense} in case of an audit?",
            "Should I file {form} jointly or separately if my spouse has {income}?",
        ],
        "expense": ["home office costs", "student loan interest", "medical expenses", "charitable donations",
                    "mortgage interest", "childcare costs", "business travel", "a new work laptop",
                    "retirement contributions", "property taxes", "union dues", "moving expenses"],
        "year": ["2023", "2024", "2025", "this year's", "last year's"],
        "status": ["self-employed", "a freelancer", "a sole proprietor", "married filing jointly",
                   "a head of household", "a nonresident alien", "retired", "a small business owner"],
        "income": ["freelance income", "rental income", "cryptocurrency gains", "a year-end bonus",
                   "dividends", "unemployment benefits", "gambling winnings", "foreign income"],
        "form": ["Schedule C", "Form 1040", "Form 1099-NEC", "quarterly estimated taxes", "Schedule E",
                 "Form 8829", "a state tax return", "an amended return"],
        "asset": ["my house", "index fund shares", "inherited stock", "a rental property", "bitcoin",
                  "company RSUs"],
        "period": ["six months", "two years", "ten years", "less than a year", "the vesting date"],
    },
    "travel": {
        "templates": [
            "What are the must-see places in {city} for a {length} trip?",
            "Is {month} a good time to visit {city}, or is it too {weather}?",
            "How do I get from the airport to the center of {city} by {transport}?",
            "Do I need a visa to visit {city} with a {passport} passport?",
            "What should I pack for {activity} near {city} in {month}?",
            "Can you plan a {length} itinerary for {city} on a {budget} budget?",
            "Which neighbourhood in {city} is best to stay in for {activity}?",
        ],
        "city": ["Lisbon", "Kyoto", "Mexico City", "Reykjavik", "Cape Town", "Vancouver", "Istanbul",
                 "Buenos Aires", "Hanoi", "Edinburgh", "Marrakesh", "Prague", "Sydney", "Bergen"],
        "length": ["three-day", "week-long", "weekend", "two-week", "one-day layover"],
        "month": ["January", "April", "July", "October", "December", "the shoulder season"],
        "weather": ["hot", "rainy", "crowded", "cold", "humid", "windy"],
        "transport": ["train", "bus", "taxi", "metro", "ferry", "rental car"],
        "passport": ["US", "Canadian", "Indian", "German", "Brazilian", "Australian"],
        "activity": ["hiking", "museum visits", "nightlife", "street food", "photography", "surfing"],
        "budget": ["backpacker", "mid-range", "luxury", "tight"],
    },
    "programming": {
        "templates": [
            "Why does my {lang} code throw {error} when I {task}?",
            "How do I {task} in {lang} without {pitfall}?",
            "What is the idiomatic way to {task} using {lib}?",
            "My {lang} service is slow when it {task}; how can I profile it?",
            "Can you explain the difference between {concept} and {concept2} in {lang}?",
            "Write a {lang} function that can {task} and add unit tests.",
        ],
        "lang": ["Python", "Rust", "Go", "TypeScript", "Java", "C++", "Kotlin", "Ruby"],
        "error": ["a null pointer exception", "a segmentation fault", "a type error", "a deadlock",
                  "an index out of range error", "a stack overflow", "a borrow checker error"],
        "task": ["parse a large JSON file", "read from a socket", "sort a list of records by date",
                 "retry an HTTP request", "spawn worker threads", "serialize objects to YAML",
                 "connect to a Postgres database", "deduplicate a stream of events"],
        "pitfall": ["leaking memory", "blocking the event loop", "copying the whole buffer",
                    "global state", "race conditions"],
        "lib": ["the standard library", "asyncio", "tokio", "pandas", "the Streams API", "goroutines"],
        "concept": ["a mutex", "a closure", "an interface", "a generic type", "a coroutine", "a trait"],
        "concept2": ["a semaphore", "a lambda", "an abstract class", "a template", "a thread", "a mixin"],
    },
    "health": {
        "templates": [
            "How many times a week should I do {exercise} to improve {goal}?",
            "Is it normal to feel {symptom} after {exercise}?",
            "What should I eat before {exercise} if I want better {goal}?",
            "How can I fit {exercise} into a busy schedule with {constraint}?",
            "What stretches help with {symptom} from {cause}?",
            "Can {habit} really improve my {goal}?",
        ],
        "exercise": ["running", "strength training", "yoga", "swimming", "cycling", "HIIT workouts",
                     "pilates", "rowing", "long walks"],
        "goal": ["endurance", "sleep quality", "flexibility", "muscle mass", "blood pressure", "posture",
                 "resting heart rate"],
        "symptom": ["sore knees", "lower back pain", "dizziness", "tight hamstrings", "shin splints",
                    "fatigue", "a stiff neck"],
        "constraint": ["two small kids", "night shifts", "a long commute", "a desk job", "frequent travel"],
        "cause": ["sitting all day", "a long run", "heavy lifting", "poor sleep", "looking at my phone"],
        "habit": ["intermittent fasting", "cold showers", "magnesium supplements", "meditation",
                  "a standing desk", "walking after meals"],
    },
    "gardening": {
        "templates": [
            "When should I plant {plant} in {climate}?",
            "Why are the leaves of my {plant} turning {color}?",
            "How often should I water {plant} growing in {soil}?",
            "What is the best fertilizer for {plant} in {season}?",
            "How do I protect my {plant} from {pest} without chemicals?",
            "Can I grow {plant} in {container} on a {light} balcony?",
        ],
        "plant": ["tomatoes", "basil", "roses", "blueberries", "a fig tree", "lavender", "zucchini",
                  "hydrangeas", "strawberries", "peppers", "a lemon tree", "garlic"],
        "climate": ["a cold northern climate", "a hot dry summer", "a coastal garden", "zone 6",
                    "a rainy region"],
        "color": ["yellow", "brown at the edges", "pale", "spotted black", "purple"],
        "soil": ["clay soil", "sandy soil", "raised beds", "pots", "compost-rich soil"],
        "season": ["spring", "early summer", "autumn", "the fruiting stage"],
        "pest": ["aphids", "slugs", "powdery mildew", "spider mites", "birds", "caterpillars"],
        "container": ["a large pot", "a grow bag", "a window box", "a hanging basket"],
        "light": ["sunny", "shady", "north-facing", "windy"],
    },
}

ANSWERS: dict[str, list[str]] = {
    "cooking": [
        "Preheat the oven, season generously, and cook until the internal temperature reaches a safe level. "
        "Let it rest for ten minutes before slicing so the juices redistribute.",
        "Pat it dry, use a hot pan with a little oil, and avoid moving it too early. Finish with butter, garlic "
        "and fresh herbs for extra flavour.",
        "Marinate it for at least an hour, then cook it low and slow. A thermometer is the most reliable way to "
        "know when it is done.",
    ],
    "tax": [
        "You can usually deduct that expense if it is ordinary and necessary for your work. Keep receipts and "
        "report it on the matching schedule; a tax professional can confirm your situation.",
        "That income is taxable and must be reported for the year you received it. Estimated quarterly payments "
        "may be required to avoid an underpayment penalty.",
        "The filing deadline is mid-April unless you request an extension, which extends the time to file but "
        "not the time to pay any tax owed.",
    ],
    "travel": [
        "Spend the first day in the old town, take a day trip on the second, and leave time for the local food "
        "markets. Public transport from the airport is cheap and frequent.",
        "Pack layers and comfortable shoes; the weather changes quickly. Book popular museums in advance and "
        "stay near a metro line.",
    ],
    "programming": [
        "The error usually means a value is used after it was freed or before it was initialised. Add a check, "
        "write a small test that reproduces it, and run it under the debugger.",
        "Use a streaming parser instead of loading everything into memory, and profile with the built-in "
        "profiler to find the hot loop.",
    ],
    "health": [
        "Three to four sessions a week with a rest day in between is a good start. Increase the load slowly and "
        "stop if you feel sharp pain.",
        "Some soreness is normal after a new routine. Stretch gently, sleep well, and see a doctor if it lasts "
        "more than a few days.",
    ],
    "gardening": [
        "Plant after the last frost in well-drained soil and water deeply once or twice a week rather than a "
        "little every day.",
        "Yellow leaves often mean overwatering or a lack of nitrogen. Check the drainage and feed with a "
        "balanced organic fertilizer.",
    ],
}


def questions(topic: str, limit: int | None = None, seed: int = 0) -> list[str]:
    """Distinct questions of one topic, shuffled with `seed`."""
    spec = TOPICS[topic]
    out: list[str] = []
    for template in spec["templates"]:
        names = [n for n in spec if n != "templates" and "{" + n + "}" in template]
        for values in itertools.product(*(spec[n] for n in names)):
            out.append(template.format(**dict(zip(names, values, strict=True))))
    out = sorted(set(out))
    random.Random(seed).shuffle(out)
    return out[:limit] if limit else out


def answer(topic: str, rnd: random.Random) -> str:
    return rnd.choice(ANSWERS[topic])
