#include "common/text/utf8.h"

#include <string.h>

/* Well-formed sequences (Unicode Table 3-7): the lead byte fixes the length and the range of the
 * second byte; every later byte is 80..BF. */
typedef struct lead_info {
    uint8_t len; /* 0: not a lead byte */
    uint8_t lo, hi;
} lead_info;

static lead_info lead_of(uint8_t b) {
    if (b < 0x80)
        return (lead_info){1, 0, 0};
    if (b < 0xC2)
        return (lead_info){0, 0, 0};
    if (b < 0xE0)
        return (lead_info){2, 0x80, 0xBF};
    if (b == 0xE0)
        return (lead_info){3, 0xA0, 0xBF};
    if (b == 0xED)
        return (lead_info){3, 0x80, 0x9F};
    if (b < 0xF0)
        return (lead_info){3, 0x80, 0xBF};
    if (b == 0xF0)
        return (lead_info){4, 0x90, 0xBF};
    if (b < 0xF4)
        return (lead_info){4, 0x80, 0xBF};
    if (b == 0xF4)
        return (lead_info){4, 0x80, 0x8F};
    return (lead_info){0, 0, 0};
}

/* How many bytes of s[0..n) (starting with a lead byte of length li.len >= 2) continue the
 * sequence correctly: 1 (the lead alone) .. li.len. */
static size_t good_prefix(const uint8_t *s, size_t n, lead_info li) {
    size_t k = 1;
    if (k < n && s[1] >= li.lo && s[1] <= li.hi) {
        k = 2;
        while (k < li.len && k < n && (s[k] & 0xC0) == 0x80)
            k++;
    }
    return k;
}

size_t utf8_next(const uint8_t *s, size_t n, uint32_t *cp, bool *valid) {
    uint8_t b = s[0];
    if (b < 0x80) {
        *cp = b;
        *valid = true;
        return 1;
    }
    lead_info li = lead_of(b);
    if (li.len == 0) {
        *cp = UTF8_REPLACEMENT;
        *valid = false;
        return 1;
    }
    size_t k = good_prefix(s, n, li);
    if (k < li.len) {
        *cp = UTF8_REPLACEMENT;
        *valid = false;
        return k;
    }
    uint32_t c = b & (0x7Fu >> li.len);
    for (size_t i = 1; i < k; i++)
        c = (c << 6) | (s[i] & 0x3Fu);
    *cp = c;
    *valid = true;
    return k;
}

size_t utf8_valid_prefix(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        while (i + 8 <= n) { /* ASCII fast path, 8 bytes at a time */
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ull)
                break;
            i += 8;
        }
        if (i >= n)
            break;
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        bool ok;
        size_t k = utf8_next(s + i, n - i, &cp, &ok);
        if (!ok)
            return i;
        i += k;
    }
    return n;
}

size_t utf8_repair(const uint8_t *s, size_t n, uint8_t *out) {
    size_t i = 0, o = 0;
    while (i < n) {
        size_t good = utf8_valid_prefix(s + i, n - i);
        memcpy(out + o, s + i, good);
        o += good;
        i += good;
        if (i >= n)
            break;
        uint32_t cp;
        bool ok;
        i += utf8_next(s + i, n - i, &cp, &ok);
        o += utf8_encode(UTF8_REPLACEMENT, out + o);
    }
    return o;
}

size_t utf8_repair_len(const uint8_t *s, size_t n) {
    size_t i = 0, o = 0;
    while (i < n) {
        size_t good = utf8_valid_prefix(s + i, n - i);
        o += good;
        i += good;
        if (i >= n)
            break;
        uint32_t cp;
        bool ok;
        i += utf8_next(s + i, n - i, &cp, &ok);
        o += 3;
    }
    return o;
}

size_t utf8_incomplete_tail(const uint8_t *s, size_t n) {
    /* The lead byte of a cut sequence is among the last 3 bytes. */
    size_t lim = n < 3 ? n : 3;
    for (size_t back = 1; back <= lim; back++) {
        uint8_t b = s[n - back];
        if ((b & 0xC0) == 0x80)
            continue; /* continuation: keep looking for the lead */
        lead_info li = lead_of(b);
        if (li.len <= back)
            return 0; /* ASCII, invalid lead, or a sequence that is already complete */
        return good_prefix(s + n - back, back, li) == back ? back : 0;
    }
    return 0;
}

size_t utf8_encode(uint32_t cp, uint8_t out[4]) {
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        cp = UTF8_REPLACEMENT;
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | (cp >> 6));
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | (cp >> 18));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

size_t utf8_prev(const uint8_t *s, size_t end) {
    size_t i = end - 1;
    for (int k = 0; k < 3 && i > 0 && (s[i] & 0xC0) == 0x80; k++)
        i--;
    return i;
}

bool utf8_is_white_space(uint32_t cp) {
    if (cp <= 0x20)
        return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
    if (cp < 0x85)
        return false;
    switch (cp) {
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
        return true;
    default:
        return cp >= 0x2000 && cp <= 0x200A;
    }
}
