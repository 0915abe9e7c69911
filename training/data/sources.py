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


def collection_name(source: str) -> str:
    """A source (prepare's dataset name) as a person would name it; a chained copy is its
    original's photos after the figure-grid JPEG chain the FLUX.1 and SDXL faces went through."""
    if source in CHAINED_FROM:
        base = CHAINED_FROM[source]
        return f"{COLLECTIONS.get(base, base)}, re-saved like the new engines' faces"
    return COLLECTIONS.get(source, source)


def collections(sources: list[str]) -> str:
    return "; ".join(collection_name(s) for s in sorted(set(sources)))
