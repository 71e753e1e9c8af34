/* Safetensors reader and writer: a round trip, then the abuse suite. Every hostile file asserts
 * the error code and a substring of the message naming the file or tensor. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/model/safetensors.h"
#include "tests/unit/model/ckpt_util.h"

/* ---- helpers ------------------------------------------------------------------------------ */

/* Parses an image, expects failure `code` and `needle` in the message. */
static void expect_bad(const uint8_t *buf, uint64_t len, int code, const char *needle) {
    st_tensor *t = (st_tensor *)1;
    int n = -1;
    afd_err err = {0};
    int rc = st_parse(buf, len, "bad.safetensors", &t, &n, &err);
    cr_assert_eq(rc, code, "rc %d (%s), want %d; msg: %s", rc, afd_strerror(rc), code, err.msg);
    cr_assert_eq(err.code, code, "err.code %d want %d", err.code, code);
    cr_assert_not_null(strstr(err.msg, "bad.safetensors"), "file not named: %s", err.msg);
    cr_assert_not_null(strstr(err.msg, needle), "'%s' not in: %s", needle, err.msg);
    cr_assert_null(t, "tensors returned on failure");
    cr_assert_eq(n, 0);
}

static void expect_bad_hdr(const char *hdr, uint64_t dsize, int code, const char *needle) {
    uint64_t len;
    uint8_t *b = ck_image(hdr, dsize, &len);
    expect_bad(b, len, code, needle);
    free(b);
}

static void expect_bad_len(uint64_t hlen, const char *hdr, uint64_t dsize, int code,
                           const char *needle) {
    uint64_t len;
    uint8_t *b = ck_image_raw(hlen, hdr, dsize, &len);
    expect_bad(b, len, code, needle);
    free(b);
}

static const uint16_t BF16_VALS[4] = {0x3f80, 0x4000, 0xc040, 0x0000};
static const float F32_VALS[6] = {1, 2, 3, 4, 5, 6.5f};

/* Writes a three-tensor file with st_writer. */
static void write_small(const char *path) {
    st_writer *w = st_writer_new();
    int64_t s_a[2] = {2, 3}, s_b[1] = {4};
    cr_assert_eq(st_writer_add(w, "a.weight", AFD_DT_F32, 2, s_a), 0);
    cr_assert_eq(st_writer_add(w, "b", AFD_DT_BF16, 1, s_b), 0);
    cr_assert_eq(st_writer_add(w, "scalar", AFD_DT_U8, 0, NULL), 0);
    afd_err err = {0};
    cr_assert_eq(st_writer_begin(w, path, "{\"format\":\"pt\"}", &err), 0, "%s", err.msg);
    cr_assert_eq(st_writer_data(w, F32_VALS, 8, &err), 0, "%s", err.msg); /* in two pieces */
    cr_assert_eq(st_writer_data(w, F32_VALS + 2, 16, &err), 0, "%s", err.msg);
    cr_assert_eq(st_writer_data(w, BF16_VALS, sizeof BF16_VALS, &err), 0, "%s", err.msg);
    uint8_t one = 7;
    cr_assert_eq(st_writer_data(w, &one, 1, &err), 0, "%s", err.msg);
    cr_assert_eq(st_writer_finish(w, &err), 0, "%s", err.msg);
}

/* ---- writer ------------------------------------------------------------------------------- */

Test(safetensors, writer_round_trip) {
    char dir[256], path[512];
    ck_tmpdir(dir, sizeof dir);
    write_small(ck_path(path, sizeof path, dir, "model.safetensors"));

    FILE *f = fopen(path, "rb");
    uint8_t lenbuf[8];
    cr_assert_eq(fread(lenbuf, 1, 8, f), 8u);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | lenbuf[i];
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    cr_assert_eq(hlen % 8, 0u, "header length %llu not a multiple of 8", (unsigned long long)hlen);
    cr_assert_eq((uint64_t)size, 8 + hlen + 24 + 8 + 1, "file size %ld", size);
    struct stat sb;
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    cr_assert_neq(stat(tmp, &sb), 0, "temporary file left behind");

    st_set *s;
    afd_err err = {0};
    cr_assert_eq(st_set_open(dir, &s, &err), 0, "%s", err.msg);
    cr_assert_eq(st_set_count(s), 3);
    const st_tensor *a = st_set_find(s, "a.weight"), *b = st_set_find(s, "b"),
                    *c = st_set_find(s, "scalar");
    cr_assert(a && b && c);
    cr_assert_null(st_set_find(s, "__metadata__"));
    cr_assert_null(st_set_find(s, "a"));
    cr_assert_eq(a->dtype, AFD_DT_F32);
    cr_assert_eq(a->ndim, 2);
    cr_assert_eq(a->shape[0], 2);
    cr_assert_eq(a->shape[1], 3);
    cr_assert_eq(a->nbytes, 24u);
    cr_assert_str_eq(a->dtype_name, "F32");
    cr_assert_str_eq(a->file, path);
    cr_assert_eq(memcmp(a->data, F32_VALS, 24), 0);
    cr_assert_eq(b->dtype, AFD_DT_BF16);
    cr_assert_eq(memcmp(b->data, BF16_VALS, 8), 0);
    /* offsets are packed in declaration order */
    cr_assert_eq((const uint8_t *)b->data, (const uint8_t *)a->data + 24);
    cr_assert_eq(c->ndim, 0);
    cr_assert_eq(c->nbytes, 1u);
    cr_assert_eq(*(const uint8_t *)c->data, 7);
    st_set_free(s);

    /* the file given by path is a set of one */
    cr_assert_eq(st_set_open(path, &s, &err), 0, "%s", err.msg);
    cr_assert_eq(st_set_count(s), 3);
    cr_assert_str_eq(st_set_path(s), path);
    st_set_free(s);
    ck_rm_rf(dir);
}

Test(safetensors, writer_refuses_bad_declarations) {
    st_writer *w = st_writer_new();
    int64_t ok[2] = {2, 2}, neg[1] = {-1}, big[3] = {INT64_MAX / 2, 4, 4};
    int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    cr_assert_eq(st_writer_add(w, "x", AFD_DT_F32, 2, ok), 0);
    cr_assert_eq(st_writer_add(w, "x", AFD_DT_F32, 2, ok), -EINVAL, "duplicate name accepted");
    cr_assert_eq(st_writer_add(w, "", AFD_DT_F32, 2, ok), -EINVAL);
    cr_assert_eq(st_writer_add(w, "__metadata__", AFD_DT_F32, 2, ok), -EINVAL);
    cr_assert_eq(st_writer_add(w, "n", AFD_DT_F32, 1, neg), -EINVAL);
    cr_assert_eq(st_writer_add(w, "o", AFD_DT_F32, 3, big), -EINVAL, "size overflow accepted");
    cr_assert_eq(st_writer_add(w, "d", AFD_DT_F32, 9, nine), -EINVAL);
    cr_assert_eq(st_writer_add(w, "t", AFD_DT_INVALID, 2, ok), -EINVAL);
    st_writer_free(w);
    st_writer_free(NULL);
}

Test(safetensors, writer_checks_data_sizes) {
    char dir[256], path[512], tmp[600];
    ck_tmpdir(dir, sizeof dir);
    ck_path(path, sizeof path, dir, "w.safetensors");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int64_t sh[1] = {4};
    afd_err err = {0};
    float buf[8] = {0};
    struct stat sb;

    /* more bytes than the tensor has */
    st_writer *w = st_writer_new();
    cr_assert_eq(st_writer_add(w, "v", AFD_DT_F32, 1, sh), 0);
    cr_assert_eq(st_writer_begin(w, path, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(st_writer_data(w, buf, 12, &err), 0, "%s", err.msg);
    int rc = st_writer_data(w, buf, 8, &err);
    cr_assert_eq(rc, AFD_E_LIMIT, "rc %d: %s", rc, err.msg);
    cr_assert_not_null(strstr(err.msg, "tensor v"), "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, "8 bytes given, only 4"), "%s", err.msg);
    rc = st_writer_finish(w, &err);
    cr_assert_lt(rc, 0, "finish after a failed write succeeded");
    cr_assert_neq(stat(path, &sb), 0, "file exists after a failed write");
    cr_assert_neq(stat(tmp, &sb), 0, "temporary file left behind");

    /* too few bytes */
    w = st_writer_new();
    cr_assert_eq(st_writer_add(w, "v", AFD_DT_F32, 1, sh), 0);
    cr_assert_eq(st_writer_begin(w, path, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(st_writer_data(w, buf, 4, &err), 0, "%s", err.msg);
    rc = st_writer_finish(w, &err);
    cr_assert_eq(rc, AFD_E_STATE, "rc %d: %s", rc, err.msg);
    cr_assert_not_null(strstr(err.msg, "tensor v: 4 of 16 bytes"), "%s", err.msg);
    cr_assert_neq(stat(path, &sb), 0, "file exists after an incomplete write");

    /* bad metadata; data after the end */
    w = st_writer_new();
    cr_assert_eq(st_writer_add(w, "v", AFD_DT_F32, 1, sh), 0);
    rc = st_writer_begin(w, path, "{\"format\":1}", &err);
    cr_assert_lt(rc, 0, "metadata with a number accepted");
    cr_assert_not_null(strstr(err.msg, "__metadata__"), "%s", err.msg);
    st_writer_free(w);
    w = st_writer_new();
    cr_assert_eq(st_writer_add(w, "v", AFD_DT_F32, 1, sh), 0);
    cr_assert_eq(st_writer_begin(w, path, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(st_writer_data(w, buf, 16, &err), 0, "%s", err.msg);
    rc = st_writer_data(w, buf, 1, &err);
    cr_assert_eq(rc, AFD_E_LIMIT, "rc %d: %s", rc, err.msg);
    cr_assert_not_null(strstr(err.msg, "after the last tensor"), "%s", err.msg);
    st_writer_free(w);
    cr_assert_neq(stat(tmp, &sb), 0, "temporary file left behind by st_writer_free");
    ck_rm_rf(dir);
}

/* ---- hostile headers ---------------------------------------------------------------------- */

Test(safetensors, header_length_checks) {
    uint8_t four[4] = {1, 0, 0, 0};
    expect_bad(four, 4, AFD_E_FORMAT, "too short");
    expect_bad_len(0, "{}", 0, AFD_E_FORMAT, "header length 0");
    expect_bad_len(1, "{}", 0, AFD_E_FORMAT, "header length 1");
    expect_bad_len(3, "{}", 0, AFD_E_FORMAT, "exceeds the file");
    expect_bad_len(1000, "{}", 100, AFD_E_FORMAT, "exceeds the file");
    expect_bad_len(UINT64_C(1) << 62, "{}", 0, AFD_E_LIMIT, "over the limit");
    expect_bad_len(UINT64_MAX, "{}", 0, AFD_E_LIMIT, "over the limit");
    expect_bad_len(ST_MAX_HEADER + 1ull, "{}", 0, AFD_E_LIMIT, "over the limit");
}

Test(safetensors, bad_json) {
    expect_bad_hdr("{\"a\":{\"dtype\":\"F32\",", 0, AFD_E_FORMAT, "header JSON");
    expect_bad_hdr("[1,2]", 0, AFD_E_FORMAT, "not an object");
    expect_bad_hdr("\"str\"", 0, AFD_E_FORMAT, "header JSON");
    expect_bad_hdr("{} x", 0, AFD_E_FORMAT, "header JSON");
    expect_bad_hdr("{\"a\":5}", 0, AFD_E_FORMAT, "tensor a: entry is not an object");
    expect_bad_hdr("{\"__metadata__\":{\"k\":3}}", 0, AFD_E_FORMAT, "__metadata__");
    expect_bad_hdr("{\"__metadata__\":[]}", 0, AFD_E_FORMAT, "__metadata__");
}

Test(safetensors, bad_entries) {
    expect_bad_hdr("{\"w\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
                   AFD_E_FORMAT, "tensor w: unknown dtype \"Q4\"");
    expect_bad_hdr("{\"w\":{\"shape\":[1],\"data_offsets\":[0,1]}}", 1, AFD_E_FORMAT,
                   "tensor w: dtype is missing");
    expect_bad_hdr("{\"w\":{\"dtype\":\"U8\",\"shape\":[\"1\"],\"data_offsets\":[0,1]}}", 1,
                   AFD_E_FORMAT, "tensor w: shape[0] is not an integer");
    expect_bad_hdr("{\"w\":{\"dtype\":\"U8\",\"shape\":[1.5],\"data_offsets\":[0,1]}}", 1,
                   AFD_E_FORMAT, "tensor w: shape[0] is not an integer");
    expect_bad_hdr("{\"w\":{\"dtype\":\"U8\",\"shape\":7,\"data_offsets\":[0,1]}}", 1, AFD_E_FORMAT,
                   "tensor w: shape is missing or not an array");
    expect_bad_hdr("{\"w\":{\"dtype\":\"U8\",\"shape\":[2,-1],\"data_offsets\":[0,1]}}", 1,
                   AFD_E_FORMAT, "tensor w: shape[1] = -1 is negative");
    expect_bad_hdr("{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                   "\"data_offsets\":[0,1]}}",
                   1, AFD_E_FORMAT, "tensor w: 9 dimensions");
    expect_bad_hdr("{\"w\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],"
                   "\"data_offsets\":[0,1]}}",
                   1, AFD_E_FORMAT, "tensor w: element count overflows");
    expect_bad_hdr("{\"w\":{\"dtype\":\"F64\",\"shape\":[4294967296,1073741824],"
                   "\"data_offsets\":[0,1]}}",
                   1, AFD_E_FORMAT, "tensor w: byte size overflows");
    expect_bad_hdr("{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,5]}}", 4,
                   AFD_E_FORMAT, "tensor w: data_offsets [0, 5] outside the data section (4");
    expect_bad_hdr("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],"
                   "\"data_offsets\":[18446744073709551615,0]}}",
                   4, AFD_E_FORMAT, "header JSON");
    expect_bad_hdr("{\"w\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[3,2]}}", 4,
                   AFD_E_FORMAT, "tensor w: data_offsets [3, 2]: end < begin");
    expect_bad_hdr("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[-1,0]}}", 4,
                   AFD_E_FORMAT, "tensor w: data_offsets must be two integers >= 0");
    expect_bad_hdr("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0]}}", 4, AFD_E_FORMAT,
                   "tensor w: data_offsets is missing");
    expect_bad_hdr("{\"w\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,4]}}", 8,
                   AFD_E_FORMAT,
                   "tensor w: data_offsets span 4 bytes but BF16 of 3 elements "
                   "needs 6");
}

Test(safetensors, header_json_error_names_file_only) {
    /* a syntax error: no tensor to name, but the file and the position are */
    expect_bad_hdr("{\"w\" {}}", 0, AFD_E_FORMAT, "line 1");
}

Test(safetensors, overlaps_and_duplicates) {
    expect_bad_hdr("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                   "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[3,7]}}",
                   8, AFD_E_FORMAT, "tensors a [0, 4] and b [3, 7] overlap");
    expect_bad_hdr("{\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]},"
                   "\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]}}",
                   8, AFD_E_FORMAT, "overlap");
    expect_bad_hdr("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                   "\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}",
                   8, AFD_E_FORMAT, "tensor a: duplicate name");
}

Test(safetensors, accepts_gaps_empty_tensors_and_other_dtypes) {
    const char *hdr = "{\"__metadata__\":{\"format\":\"pt\"},"
                      "\"e\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[2,2]},"
                      "\"f\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[8,16]},"
                      "\"g\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}   ";
    uint64_t len;
    uint8_t *b = ck_image(hdr, 16, &len);
    st_tensor *t;
    int n;
    afd_err err = {0};
    cr_assert_eq(st_parse(b, len, "ok.safetensors", &t, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 3);
    for (int i = 0; i < n; i++) {
        if (strcmp(t[i].name, "f") == 0) {
            cr_assert_eq(t[i].dtype, AFD_DT_INVALID, "F64 maps to INVALID");
            cr_assert_str_eq(t[i].dtype_name, "F64");
            cr_assert_eq((const uint8_t *)t[i].data, b + 8 + strlen(hdr) + 8);
        }
        if (strcmp(t[i].name, "e") == 0) cr_assert_eq(t[i].nbytes, 0u);
    }
    st_tensors_free(t, n);
    free(b);
}

/* ---- directories -------------------------------------------------------------------------- */

static void write_one(const char *dir, const char *file, const char *tensor, uint8_t value) {
    char path[512];
    st_writer *w = st_writer_new();
    int64_t sh[1] = {16};
    uint8_t data[16];
    memset(data, value, sizeof data);
    afd_err err = {0};
    cr_assert_eq(st_writer_add(w, tensor, AFD_DT_U8, 1, sh), 0);
    cr_assert_eq(st_writer_begin(w, ck_path(path, sizeof path, dir, file), NULL, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(st_writer_data(w, data, 16, &err), 0, "%s", err.msg);
    cr_assert_eq(st_writer_finish(w, &err), 0, "%s", err.msg);
}

static void write_index(const char *dir, const char *map) {
    char path[512], text[1024];
    snprintf(text, sizeof text, "{\"metadata\":{\"total_size\":32},\"weight_map\":{%s}}", map);
    ck_write_text(ck_path(path, sizeof path, dir, "model.safetensors.index.json"), text);
}

static void expect_set_fail(const char *dir, int code, const char *needle) {
    st_set *s = (st_set *)1;
    afd_err err = {0};
    int rc = st_set_open(dir, &s, &err);
    cr_assert_eq(rc, code, "rc %d (%s) want %d: %s", rc, afd_strerror(rc), code, err.msg);
    cr_assert_null(s);
    cr_assert_not_null(strstr(err.msg, needle), "'%s' not in: %s", needle, err.msg);
}

Test(safetensors, sharded_directory_with_index) {
    char dir[256];
    ck_tmpdir(dir, sizeof dir);
    write_one(dir, "model-00001-of-00002.safetensors", "t.a", 1);
    write_one(dir, "model-00002-of-00002.safetensors", "t.b", 2);
    write_one(dir, "unrelated.safetensors", "t.c", 3); /* not in the index: not opened */
    write_index(dir, "\"t.a\":\"model-00001-of-00002.safetensors\","
                     "\"t.b\":\"model-00002-of-00002.safetensors\"");
    st_set *s;
    afd_err err = {0};
    cr_assert_eq(st_set_open(dir, &s, &err), 0, "%s", err.msg);
    cr_assert_eq(st_set_count(s), 2);
    const st_tensor *a = st_set_find(s, "t.a"), *b = st_set_find(s, "t.b");
    cr_assert(a && b);
    cr_assert_eq(((const uint8_t *)a->data)[15], 1);
    cr_assert_eq(((const uint8_t *)b->data)[0], 2);
    cr_assert_not_null(strstr(b->file, "model-00002-of-00002.safetensors"), "%s", b->file);
    cr_assert_null(st_set_find(s, "t.c"));
    st_set_free(s);
    ck_rm_rf(dir);
}

Test(safetensors, sharded_directory_errors) {
    char dir[256], path[512];
    ck_tmpdir(dir, sizeof dir);
    write_one(dir, "s1.safetensors", "t.a", 1);
    write_one(dir, "s2.safetensors", "t.b", 2);

    write_index(dir, "\"t.a\":\"s1.safetensors\",\"t.b\":\"s3.safetensors\"");
    expect_set_fail(dir, AFD_E_NOTFOUND, "shard s3.safetensors (holding tensor t.b) is missing");

    write_index(dir, "\"t.a\":\"s1.safetensors\",\"t.x\":\"s2.safetensors\"");
    expect_set_fail(dir, AFD_E_NOTFOUND, "tensor t.x: listed in s2.safetensors but absent");

    write_index(dir, "\"t.a\":\"s2.safetensors\",\"t.b\":\"s2.safetensors\"");
    expect_set_fail(dir, AFD_E_NOTFOUND, "tensor t.a: listed in s2.safetensors but absent");

    write_one(dir, "s3.safetensors", "t.a", 9); /* t.a in two shards */
    write_index(dir, "\"t.a\":\"s1.safetensors\",\"t.b\":\"s3.safetensors\"");
    expect_set_fail(dir, AFD_E_FORMAT, "tensor t.a is in two shards");

    write_index(dir, "\"t.a\":\"../s1.safetensors\"");
    expect_set_fail(dir, AFD_E_FORMAT, "plain file name");

    ck_write_text(ck_path(path, sizeof path, dir, "model.safetensors.index.json"), "{\"x\":1}");
    expect_set_fail(dir, AFD_E_FORMAT, "key weight_map");

    ck_write_text(path, "{\"weight_map\":{\"a\":\"s1.safetensors\",\"a\":\"s2.safetensors\"}}");
    expect_set_fail(dir, AFD_E_FORMAT, "duplicate");

    /* a broken shard is named */
    ck_write_text(ck_path(path, sizeof path, dir, "s4.safetensors"), "short");
    write_index(dir, "\"t.a\":\"s4.safetensors\"");
    expect_set_fail(dir, AFD_E_FORMAT, "s4.safetensors: 5 bytes: too short");
    ck_rm_rf(dir);
}

Test(safetensors, glob_and_empty_directories) {
    char dir[256];
    ck_tmpdir(dir, sizeof dir);
    expect_set_fail(dir, AFD_E_NOTFOUND, "no model.safetensors");
    write_one(dir, "b.safetensors", "t.b", 2);
    write_one(dir, "a.safetensors", "t.a", 1);
    st_set *s;
    afd_err err = {0};
    cr_assert_eq(st_set_open(dir, &s, &err), 0, "%s", err.msg);
    cr_assert_eq(st_set_count(s), 2);
    cr_assert_str_eq(st_set_at(s, 0)->name, "t.a", "files are read in sorted order");
    cr_assert_null(st_set_at(s, 2));
    st_set_free(s);
    write_one(dir, "c.safetensors", "t.a", 3);
    expect_set_fail(dir, AFD_E_FORMAT, "tensor t.a is in two shards");
    ck_rm_rf(dir);
    expect_set_fail("/nonexistent/afd/dir", AFD_E_NOTFOUND, "/nonexistent/afd/dir");
}

Test(safetensors, many_tensors_hash_lookup) {
    char dir[256], path[512];
    ck_tmpdir(dir, sizeof dir);
    st_writer *w = st_writer_new();
    int64_t sh[1] = {1};
    char name[64];
    for (int i = 0; i < 1500; i++) {
        snprintf(name, sizeof name, "model.layers.%d.w", i);
        cr_assert_eq(st_writer_add(w, name, AFD_DT_U8, 1, sh), 0);
    }
    afd_err err = {0};
    cr_assert_eq(
        st_writer_begin(w, ck_path(path, sizeof path, dir, "model.safetensors"), NULL, &err), 0,
        "%s", err.msg);
    for (int i = 0; i < 1500; i++) {
        uint8_t v = (uint8_t)i;
        cr_assert_eq(st_writer_data(w, &v, 1, &err), 0, "%s", err.msg);
    }
    cr_assert_eq(st_writer_finish(w, &err), 0, "%s", err.msg);
    st_set *s;
    cr_assert_eq(st_set_open(dir, &s, &err), 0, "%s", err.msg);
    for (int i = 0; i < 1500; i++) {
        snprintf(name, sizeof name, "model.layers.%d.w", i);
        const st_tensor *t = st_set_find(s, name);
        cr_assert_not_null(t, "%s", name);
        cr_assert_eq(*(const uint8_t *)t->data, (uint8_t)i, "%s", name);
    }
    st_set_free(s);
    ck_rm_rf(dir);
}
