"""Sentences and the PyTorch sentence-embedding reference, shared by the accuracy tests."""

from __future__ import annotations

import numpy as np

# Sentences of varied length, topic, punctuation and script: the MiniLM accuracy set, and (the
# first ones) the texts the tiny models are compared on.
SENTENCES = [
    "A man is eating food.",
    "The girl is carrying a baby.",
    "Stock markets fell sharply after the central bank raised interest rates by 50 basis points.",
    "Wait... what?!",
    "Der Hund läuft schnell über die Wiese.",
    "def fibonacci(n): return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)",
    "Meet me at 10:30 a.m. at Gate B-17, Terminal 2.",
    "Machine learning models can inherit biases present in their training data, which raises "
    "questions about fairness, accountability and transparency when they are deployed in "
    "hiring, lending or criminal justice.",
    "東京は日本の首都です。",
    "Prices start at $19.99 (plus tax) — limited time only!!!",
    "OK.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "A man is eating a piece of bread.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.",
    "The new movie is awesome!",
    "The cat sits outside.",
    "Do you like pizza?",
    "I can't believe it's already November; where did the year go?",
    "The patient presented with acute chest pain radiating to the left arm.",
    "Hi",
    "The Treaty of Westphalia (1648) ended the Thirty Years' War.",
    "She sells sea shells by the sea shore.",
    "Error 404: the page you requested could not be found.",
    "My grandmother's recipe calls for two cups of flour, a pinch of salt, and three eggs.",
    "Quantum entanglement does not allow faster-than-light communication.",
    "The committee will reconvene next Tuesday to discuss the budget proposal in detail.",
    "Can you recommend a good book about the history of mathematics?",
    "Heavy rain is expected across the northern regions throughout the weekend.",
    "The striker scored twice in the final ten minutes to secure the championship.",
    "Please remove the battery before cleaning the device with a damp cloth.",
    "To be, or not to be, that is the question.",
    "The mitochondria is the powerhouse of the cell.",
    'He whispered, "Don\'t tell anyone," and walked away.',
    "Dogs are loyal; cats are independent; parrots are loud.",
    "The algorithm runs in O(n log n) time and uses O(n) extra memory.",
    "Volcanic ash grounded hundreds of flights across Europe in 2010.",
    "I think the restaurant was overrated, honestly, and the service was slow.",
    "Turn left at the second traffic light, then continue straight for two kilometres.",
    "The quick brown fox jumps over the lazy dog.",
    "In the beginning God created the heaven and the earth. And the earth was without form, and "
    "void; and darkness was upon the face of the deep.",
    "The expedition reached the summit at dawn after a twelve-hour climb through snow, wind and "
    "thin air, and the team spent only fifteen minutes at the top before starting the long "
    "descent back to base camp.",
    "Un homme mange de la nourriture.",
    "¿Dónde está la biblioteca más cercana?",
    "Москва — столица России.",
    "Il pleut depuis trois jours et la rivière déborde.",
    "Emoji are tokens too 🤖🚀",
    "#hashtag @mention https://example.com/path?query=1",
    "lol idk what ur talking abt tbh",
    "ALL CAPS SENTENCES FEEL LIKE SHOUTING.",
    "1, 2, 3, 4, 5, 6, 7, 8, 9, 10",
    "Water boils at 100 degrees Celsius at sea level.",
    "Investors remain cautious ahead of the quarterly earnings reports.",
    "Never gonna give you up, never gonna let you down.",
]

# Calibration texts for the recipes that read data (static-int8, dynamic-int8 row_scaling):
# other sentences than the accuracy set, of as varied lengths and kinds.
CALIBRATION_SENTENCES = [
    "Thanks!",
    "No way.",
    "Sure",
    "Good morning, everyone.",
    "Where is the station?",
    "The train was late again this morning.",
    "Our team shipped the new release on Friday.",
    "Das Wetter ist heute schön.",
    "La réunion commence à neuf heures.",
    "北京是中国的首都。",
    "Click the blue button to continue.",
    "What time does the museum open on Sundays?",
    "The soup needs more salt, and maybe some pepper.",
    "Researchers measured the temperature of the lake every hour for a year.",
    "He forgot his umbrella and got soaked on the way home.",
    "The contract expires at the end of the month unless both parties renew it.",
    "Add 2 cups of water, stir, and simmer for 15 minutes.",
    "Battery at 5% - please plug in your charger",
    "omg that game was insane!!!",
    "The orchestra played Beethoven's ninth symphony to a full house.",
    "Satellites relay signals between ground stations thousands of kilometres apart.",
    "Our quarterly revenue grew by 12 percent, driven mostly by subscriptions in Asia.",
    "The library will be closed for renovation from June to September.",
    "If the input is empty, the function returns None instead of raising an error.",
    "Children learn languages faster than adults, according to several studies.",
    "A small boat drifted slowly toward the rocky shore while the storm grew stronger.",
    "print('hello world')",
    "The old bridge was replaced by a modern steel structure in 1998.",
    "Why is the sky blue?",
    "Nice!",
    "The doctor recommended rest, fluids, and a follow-up visit in two weeks.",
    "Traffic on the highway came to a standstill after the accident near exit 12, and police "
    "advised drivers to take the coastal road until the lanes were cleared.",
]


def sentence_transformers_reference(texts) -> np.ndarray:
    """Mean pooling + L2 normalization of AutoModel outputs of the real all-MiniLM-L6-v2, as
    sentence-transformers does it (truncated at its max_seq_length, 256)."""
    import torch
    import transformers
    from checkpoints import minilm_dir

    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_dir())
    model = transformers.AutoModel.from_pretrained(minilm_dir()).eval()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"][..., None].float()
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1).numpy()
