"""Shingles of texts, fast: text becomes an array of UTF-8 bytes, a token its bytes read as one integer, and a
shingle a rolling polynomial hash computed with numpy (uint64 arithmetic wraps mod 2^64). No Python object is made
per token. De-duplication and decontamination both compare texts by these."""

from __future__ import annotations

import numpy as np

P = np.uint64(1_099_511_628_211)  # odd, so invertible mod 2^64
P_INV = np.uint64(pow(int(P), -1, 2**64))
EMPTY = np.array([np.uint64(0x9E3779B97F4A7C15)], dtype=np.uint64)  # the shingle set of a text with none


def _within(values: np.ndarray, low: int, high: int) -> np.ndarray:
    """low <= values <= high, in one comparison (below low, the unsigned difference wraps to a large number)."""
    kind = values.dtype.type
    return (values - kind(low)) <= kind(high - low)


def _window_hash(values: np.ndarray, n: int) -> np.ndarray:
    """Polynomial hash of every window of n consecutive values (one hash of all of them when shorter)."""
    n = min(n, len(values))
    out = values[: len(values) - n + 1].copy()
    with np.errstate(over="ignore"):
        for k in range(1, n):
            out *= P
            out += values[k : len(values) - n + 1 + k]
    return out


_POWERS: dict[int, np.ndarray] = {}


def _powers(base: np.uint64, count: int) -> np.ndarray:
    """base^0 .. base^(count-1) mod 2^64 (computed once for the longest batch seen, then sliced)."""
    known = _POWERS.get(int(base))
    if known is None or len(known) < count:
        with np.errstate(over="ignore"):
            known = np.concatenate(
                ([np.uint64(1)], np.cumprod(np.full(max(2 * count, 1 << 20) - 1, base, dtype=np.uint64)))
            )
        _POWERS[int(base)] = known
    return known[:count]


def _windows_inside(tokens: np.ndarray, docs: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n-gram hashes of a token stream ordered by document, with their documents; windows crossing documents are
    dropped."""
    if len(tokens) < n:
        return np.zeros(0, np.uint64), np.zeros(0, np.int32)
    hashes = _window_hash(tokens, n)
    inside = docs[: len(hashes)] == docs[n - 1 :]
    return hashes[inside], docs[: len(hashes)][inside]


BYTE_MASKS = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [2**64 - 1], dtype=np.uint64)  # the low k bytes


def batch_shingles(texts: list[str], word_ngram: int, char_ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """Shingle hashes of many texts at once, with the index of the text each belongs to (in no set order).

    A token is a word (a run of letters: a-z, 0-9 and every character from U+00C0 on) in most texts and a single
    letter in mostly-Chinese ones; shingles are n-grams of tokens, word_ngram or char_ngram. Duplicates are kept:
    MinHash does not need sets. The texts are worked on as one UTF-8 byte string, each ended by NUL (never part of
    a word), so that most tokens are at most 8 bytes and read as one integer.
    """
    if not texts:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    # Each text encoded alone: an ASCII one is copied, not decoded. 8 NULs more at the end: 8-byte reads stay inside.
    pieces = [text.lower().encode("utf-8", "surrogatepass").replace(b"\0", b" ") for text in texts]
    data = b"\0".join([*pieces, bytes(8)])
    b = np.frombuffer(data, dtype=np.uint8)
    sizes = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces)) + 1  # with the NUL after
    ends = np.cumsum(sizes) - 1
    # Bytes of letters: ASCII a-z and 0-9, and those of characters from U+00C0 on (UTF-8's C2 xx are U+0080..U+00BF).
    not_c2 = b != 0xC2
    letter = (_within(b, 48, 57) | _within(b, 97, 122) | (b >= 0x80)) & not_c2
    letter[1:] &= not_c2[:-1]
    lead = ~_within(b, 0x80, 0xBF)  # a character's first byte
    cjk = _within(b, 0xE4, 0xE9)  # leads of U+4000..U+9FFF, then U+3400..U+3FFF and U+F900..U+FAFF by their 2nd byte
    cjk[:-1] |= ((b[:-1] == 0xE3) & (b[1:] >= 0x90)) | ((b[:-1] == 0xEF) & _within(b[1:], 0xA4, 0xAB))
    text_starts = ends - sizes + 1
    chinese = np.add.reduceat(cjk, text_starts, dtype=np.int32) * 2 > np.add.reduceat(
        letter & lead, text_starts, dtype=np.int32
    )
    begins = letter.copy()  # a letter that does not follow one; in a Chinese text, every letter
    begins[1:] &= ~letter[:-1]
    if chinese.any():
        in_chinese = np.zeros(len(b), dtype=bool)
        in_chinese[: ends[-1] + 1] = np.repeat(chinese, sizes)
        begins |= letter & lead & in_chinese
    last = letter.copy()
    last[:-1] &= ~letter[1:] | begins[1:]
    starts = np.flatnonzero(begins)
    values = _token_values(data, starts, np.flatnonzero(last) + 1 - starts)
    first_token = np.searchsorted(starts, text_starts)  # a text's tokens are consecutive
    counts = np.diff(first_token, append=len(starts))
    doc = np.repeat(np.arange(len(texts), dtype=np.int32), counts)
    if word_ngram == char_ngram:
        parts = [_windows_inside(values, doc, word_ngram)]
    else:
        zh = chinese[doc]
        parts = [_windows_inside(values[zh], doc[zh], char_ngram), _windows_inside(values[~zh], doc[~zh], word_ngram)]
    ngram = np.where(chinese, char_ngram, word_ngram)
    for short in np.flatnonzero((counts > 0) & (counts < ngram)).tolist():  # rare: fewer tokens than n, one hash
        tokens = values[first_token[short] : first_token[short] + counts[short]]
        parts.append((_window_hash(tokens, int(ngram[short])), np.array([short], dtype=np.int32)))
    return np.concatenate([hashes for hashes, _ in parts]), np.concatenate([owners for _, owners in parts])


def _token_values(data: bytes, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Per token, its bytes as one integer when they are at most 8 (exact: tokens hold no NUL), else a polynomial
    hash of its 8-byte pieces."""
    eight_bytes_at = np.ndarray((len(data) - 7,), dtype="<u8", buffer=data, strides=(1,))  # unaligned reads
    pieces = (lengths + 7) >> 3
    if pieces.max(initial=1) == 1:
        unused_bits = ((8 - lengths) << 3).view(np.uint64)  # the bytes after the token, shifted out and back
        return (eight_bytes_at[starts] << unused_bits) >> unused_bits
    first = np.cumsum(pieces) - pieces
    rank = np.arange(int(pieces.sum())) - np.repeat(first, pieces)
    at = np.repeat(starts, pieces) + 8 * rank
    left = np.repeat(lengths, pieces) - 8 * rank
    with np.errstate(over="ignore"):  # a token's hash is the difference of one running sum, as a window's would be
        running = np.zeros(len(at) + 1, dtype=np.uint64)
        np.cumsum((eight_bytes_at[at] & BYTE_MASKS[np.minimum(left, 8)]) * _powers(P, len(at)), out=running[1:])
        return (running[first + pieces] - running[first]) * _powers(P_INV, len(at))[first]
