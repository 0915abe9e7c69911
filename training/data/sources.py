"""The sources' names in a person's words: which engine made a fake source's faces, what a
collection is, and the engines no model here has seen. Read by export, fuse and the card."""

from __future__ import annotations

# What each fake source's generator is, for the page and the card ("which generators has it
# learned?"). A source not named here is shown by its folder name.
GENERATORS = {
    "140k": "StyleGAN (the 140k set: FFHQ photos vs StyleGAN faces)",
    "stylegan2-unsplash": "StyleGAN2 (thispersondoesnotexist.com)",
    "stable-diffusion": "Stable Diffusion 2.1 (SDFD portraits)",
    "flux1-schnell": "FLUX.1 [schnell] (Black Forest Labs, 2024)",
    "sdxl": "SDXL (Stability AI)",
}
NOT_LEARNED = (
    "FLUX.1 [dev] and [pro], DALL·E, Midjourney, GPT-image, Stable Diffusion 1.x and 3, other "
    "newer engines, StyleGAN3, face swaps and edits; how it fares on an engine it never saw is "
    "measured by leaving one out of training"
)
# Each source's collection in a person's words, for the page's model line and the card.
COLLECTIONS = {
    "140k": "the 140k set (FFHQ photos, StyleGAN faces)",
    "stylegan2-unsplash": "Unsplash photos and StyleGAN2 faces",
    "stable-diffusion": "Stable Diffusion 2.1 portraits",
    "real-portraits": "studio portraits",
    "fairface": "FairFace photos",
    "flux1-schnell": "FLUX.1 [schnell] faces",
    "sdxl": "SDXL faces",
    "t2i-real": "sharp portraits and Unsplash photos at the new engines' size",
}
# Each chained copy (`training chain`, named by the Makefile) and the source it was copied from.
CHAINED_FROM = {
    "140k-chain": "140k",
    "su-chain": "stylegan2-unsplash",
    "sd-chain": "stable-diffusion",
    "fairface-chain": "fairface",
    "fairface-val-chain": "fairface",
}

# Each re-shared copy (`training chain --steps reshare`) and the source it was copied from.
RESHARED_FROM = {
    "140k-reshare": "140k",
    "su-reshare": "stylegan2-unsplash",
    "sd-reshare": "stable-diffusion",
    "fairface-reshare": "fairface",
    "rp-reshare": "real-portraits",
    "t2i-real-reshare": "t2i-real",
    "flux1-schnell-reshare": "flux1-schnell",
    "sdxl-reshare": "sdxl",
}


def original(source: str) -> str:
    """The source a processed copy was made from; any other source is its own."""
    return CHAINED_FROM.get(source) or RESHARED_FROM.get(source) or source


def left_out(source: str, names: set[str]) -> bool:
    """Whether `source` is among `names`, or a processed copy of one of them: a source left out
    of a fit takes its copies, which are the same photos, with it."""
    return source in names or original(source) in names


def generator_names(fake_sources: list[str]) -> list[str]:
    """The engines behind these fake sources, once each: a copy's engine is its original's."""
    names = [GENERATORS.get(original(s), original(s)) for s in sorted(fake_sources)]
    return list(dict.fromkeys(names))


def collections(sources: list[str]) -> str:
    """The collections in a person's words, each once; processed copies are counted after
    them instead of repeating their originals' names."""
    text = "; ".join(COLLECTIONS.get(s, s) for s in sorted({original(s) for s in sources}))
    chained = len({s for s in sources if s in CHAINED_FROM})
    reshared = len({s for s in sources if s in RESHARED_FROM})
    copies = []
    if chained:
        copies.append(f"{chained} of them re-saved like the new engines' faces")
    if reshared:
        copies.append(f"{reshared} of them shrunk and re-saved as JPEG")
    return f"{text}; copies of {' and of '.join(copies)}" if copies else text
