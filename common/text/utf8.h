/* utf8.h: UTF-8 primitives for the tokenizer: decode one character, validate, repair, and find
 * an incomplete tail. Pure functions on (buf, len): no allocation, no state, thread-safe.
 *
 * Invalid input is repaired the way the Unicode standard recommends ("substitution of maximal
 * subparts", Unicode §3.9 U+FFFD policy; also what the WHATWG TextDecoder, Node's
 * Buffer.toString('utf8') and Rust's String::from_utf8_lossy do): decoding stops at the first
 * byte that cannot continue a well-formed sequence, and the bytes read so far (at least one)
 * become one U+FFFD. So "\xE4\xB8" + "A" gives U+FFFD "A", and "\xED\xA0\x80" (a surrogate)
 * gives three U+FFFD.
 */
#ifndef AFD_UTF8_H
#define AFD_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UTF8_REPLACEMENT 0xFFFDu
#define UTF8_MAX_EXPANSION 3 /* a repaired string is at most 3x the input (one U+FFFD per byte) */

/* Decodes the character at s[0..n), n >= 1. Returns the number of bytes it takes (1..4) and sets
 * *cp and *valid. For an ill-formed sequence, returns the length of its maximal subpart (1..3)
 * with *cp = U+FFFD and *valid = false; an incomplete sequence cut by the end of the buffer is
 * ill-formed too. */
size_t utf8_next(const uint8_t *s, size_t n, uint32_t *cp, bool *valid);

/* Length of the longest well-formed prefix of s[0..n) (n when all of it is valid). */
size_t utf8_valid_prefix(const uint8_t *s, size_t n);

/* Writes s[0..n) to out with every ill-formed subpart replaced by U+FFFD (EF BF BD); out must
 * hold UTF8_MAX_EXPANSION * n bytes. Returns the number of bytes written. */
size_t utf8_repair(const uint8_t *s, size_t n, uint8_t *out);

/* The length utf8_repair would write for s[0..n) (n when s is valid). */
size_t utf8_repair_len(const uint8_t *s, size_t n);

/* The number of trailing bytes of s[0..n) (0..3) that are a proper prefix of a well-formed
 * sequence, i.e. could still become a character when more bytes arrive. */
size_t utf8_incomplete_tail(const uint8_t *s, size_t n);

/* Encodes cp (<= 0x10FFFF, not a surrogate; else U+FFFD) into out; returns 1..4. */
size_t utf8_encode(uint32_t cp, uint8_t out[4]);

/* Start of the character that ends at s[end] (end > 0): steps back over continuation bytes,
 * at most 3. For well-formed input this is the previous character boundary. */
size_t utf8_prev(const uint8_t *s, size_t end);

/* Unicode White_Space (what Rust's char::is_whitespace and Oniguruma's \s match): U+0009..000D,
 * U+0020, U+0085, U+00A0, U+1680, U+2000..200A, U+2028, U+2029, U+202F, U+205F, U+3000. */
bool utf8_is_white_space(uint32_t cp);

#endif
