/* stop.h: stop strings over the decoded text of one choice (OpenAI's `stop`).
 *
 * An oa_stop is fed the text deltas of one choice in order (each delta complete UTF-8, as the
 * detokenizer gives them; empty deltas are fine) and answers, per delta, the text that is safe
 * to send now. Semantics: generation stops at the first byte position where some stop string
 * ends; the text sent is everything before that occurrence (when several stops end at the same
 * position, the longest wins: the cut is at the earliest start). Nothing after the cut is ever
 * sent. While no stop has matched, the longest suffix of the text that is a proper prefix of
 * some stop string is withheld, and released as soon as the next bytes rule it out, or by
 * oa_stop_finish when the generation ends another way (length, EOS). The result does not depend
 * on how the text is split into deltas. Stops and text are compared as bytes; with UTF-8 stops
 * and UTF-8 deltas every cut and every withheld suffix falls on a character boundary.
 *
 * Cost: an Aho-Corasick automaton over the stops; each delta byte is looked at a constant
 * number of times (amortized), whatever the length of the output; memory is the automaton plus
 * the withheld bytes (< the longest stop). No allocation after oa_stop_new except when a delta
 * must be joined to withheld bytes and is larger than any before (checked, -ENOMEM).
 *
 * Ownership: oa_stop_new copies the stops. The text an answer points at is owned by the
 * matcher or is a slice of the caller's delta; it is valid until the next call on the matcher
 * (and, when it is the caller's delta, while that delta lives). One matcher per choice; not
 * thread-safe (one thread at a time). Errors: 0 / negative errno.
 *
 * Logprobs: oa_stop_emitted gives the running byte count sent; a token whose text ends at or
 * before that count may have its logprob sent, and after a match the tokens that start at or
 * after the cut are dropped.
 */
#ifndef AFD_ROUTER_STOP_H
#define AFD_ROUTER_STOP_H

#include <stddef.h>
#include <stdint.h>

#define OA_STOP_MAX_BYTES 65535u /* total bytes over all stops of one matcher */

typedef struct oa_stop oa_stop;

/* Builds a matcher for n stops (stops[i] of lens[i] bytes; NUL bytes allowed). n may be 0: the
 * matcher then passes everything through. Returns 0 and *out, -EINVAL for an empty stop or a
 * total over OA_STOP_MAX_BYTES, -ENOMEM. Free with oa_stop_free. */
int oa_stop_new(const char *const *stops, const size_t *lens, size_t n, oa_stop **out);
void oa_stop_free(oa_stop *s); /* NULL is a no-op */

/* Feeds one delta. *out / *out_len: the text to send now (possibly empty, never NULL).
 * Returns 0 (no stop yet), 1 (a stop matched: *out ends right before it; this and every later
 * call send nothing more), -ENOMEM. After a match or oa_stop_finish, feeding returns 1 / 0 with
 * nothing to send. */
int oa_stop_feed(oa_stop *s, const char *delta, size_t n, const char **out, size_t *out_len);

/* The generation ended without a stop string: releases the withheld text into *out. Returns 0
 * (1 if a stop had matched: nothing to release). Further feeds send nothing. */
int oa_stop_finish(oa_stop *s, const char **out, size_t *out_len);

/* Bytes withheld now. */
size_t oa_stop_held(const oa_stop *s);
/* Total bytes sent so far (sum of every *out_len returned). */
uint64_t oa_stop_emitted(const oa_stop *s);
/* Index of the stop that matched, or -1. */
int oa_stop_which(const oa_stop *s);

/* Back to the state after oa_stop_new (same stops), for reuse by another choice. */
void oa_stop_reset(oa_stop *s);

#endif
