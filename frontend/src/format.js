// Small, pure formatting helpers shared by several components.

/** 0.1234 → "12%"; values near the ends keep one decimal so 99.6% does not read as certain. */
export function percent(p) {
  if (typeof p !== 'number' || Number.isNaN(p)) return '–'
  const v = Math.min(1, Math.max(0, p)) * 100
  if (v > 0 && v < 1) return `${v.toFixed(1)}%`
  if (v > 99 && v < 100) return `${v.toFixed(1)}%`
  return `${Math.round(v)}%`
}

/** Bytes → "10 MB" in MiB, the unit the server uses in its own messages. */
export function megabytes(bytes) {
  const mb = bytes / 2 ** 20
  return `${mb >= 10 || Number.isInteger(mb) ? Math.round(mb) : mb.toFixed(1)} MB`
}

/** Pixels → "40 megapixels". */
export function megapixels(pixels) {
  const mp = pixels / 1_000_000
  return `${mp >= 10 || Number.isInteger(mp) ? Math.round(mp) : mp.toFixed(1)} megapixels`
}

/** The verdict in words a person reads, never the raw label. */
export function verdictWords(label) {
  return label === 'fake' ? 'Likely fake' : label === 'real' ? 'Likely real' : 'No verdict'
}
