// test_tokenizer.c: GPT-2 BPE against ids from the reference encoder (tests/gen/
// gpt2_reference.py, openai/gpt-2's encoder.py logic on the `regex` module), round trips,
// streaming == whole-text encoding, long pre-tokens against the reference's merge loop,
// and errors (invalid UTF-8, bad vocabulary).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "common.h"
#include "tokenizer.h"

// Expected ids: output of `python3 tests/gen/gpt2_reference.py`.
static const struct {
    const char *name, *text;
    int32_t ids[80];
    size_t n;
} cases[] = {
    {"hello",
     "Hello world",
     {15496, 995},
     2},
    {"contractions",
     "I'm don't they'll we've she's you're he'd IT'S",
     {40, 1101, 836, 470, 484, 1183, 356, 1053, 673, 338, 345, 821, 339, 1549, 7283, 6, 50},
     17},
    {"numbers",
     "In 2024, 3.14159 and 1,000,000",
     {818, 48609, 11, 513, 13, 1415, 19707, 290, 352, 11, 830, 11, 830},
     13},
    {"spaces",
     "a    b  \n\n  c",
     {64, 220, 220, 220, 275, 220, 220, 628, 220, 269},
     10},
    {"newlines",
     "line one\nline two\n\n\nline three\n",
     {1370, 530, 198, 1370, 734, 628, 198, 1370, 1115, 198},
     10},
    {"tabs",
     "\tindented\t\tcode\t x = 1;\n\t\treturn",
     {197, 521, 4714, 197, 197, 8189, 197, 2124, 796, 352, 26, 198, 197, 197, 7783},
     15},
    {"accents",
     "caf\xc3\xa9 na\xc3\xafve r\xc3\xa9sum\xc3\xa9",
     {66, 1878, 2634, 41492, 40560, 16345, 2634},
     7},
    {"emoji",
     "hi \xf0\x9f\x91\x8b\xf0\x9f\x8f\xbd there \xf0\x9f\x9a\x80",
     {5303, 50169, 233, 8582, 237, 121, 612, 12520, 248, 222},
     10},
    {"cjk",
     "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x83\x86\xe3\x82\xad\xe3\x82"
     "\xb9\xe3\x83\x88 \xe4\xb8\xad\xe6\x96\x87",
     {33768, 98, 17312, 105, 45739, 252, 5641, 24336, 25084, 43302, 220, 40792, 23877, 229},
     14},
    {"mixed",
     " = Valkyria Chronicles III = \n \n Senj\xc5\x8d no Valkyria 3 : <unk> Chronicles"
     " ( Japanese : \xe6\x88\xa6\xe5\xa0\xb4\xe3\x81\xae\xe3\x83\xb4\xe3\x82\xa1\xe3"
     "\x83\xab\xe3\x82\xad\xe3\x83\xa5\xe3\x83\xaa\xe3\x82\xa2""3 , lit . Valkyria of "
     "the Battlefield 3 ) , commonly referred to as Valkyria Chronicles III outside Ja"
     "pan , is a tactical role @-@ playing video game .",
     {796, 569, 18354, 7496, 17740, 6711, 796, 220, 198, 220, 198, 2311, 73, 13090, 645, 569,
      18354, 7496, 513, 1058, 1279, 2954, 29, 17740, 357, 4960, 1058, 10545, 230, 99, 161, 254,
      112, 5641, 44444, 9202, 25084, 24440, 12675, 11839, 18, 837, 6578, 764, 569, 18354, 7496,
      286, 262, 30193, 513, 1267, 837, 8811, 6412, 284, 355, 569, 18354, 7496, 17740, 6711, 2354,
      2869, 837, 318, 257, 16106, 2597, 2488, 12, 31, 2712, 2008, 983, 764},
     76},
    {"edge",
     "  leading and trailing  \r\n\xc2\xa0nbsp\xe2\x80\x83""em-space 'quoted' ''' x'sy"
     " 42nd !!!?? <|endoftext|>",
     {220, 3756, 290, 25462, 220, 220, 201, 198, 1849, 77, 24145, 447, 225, 368, 12, 13200, 705,
      421, 5191, 6, 705, 7061, 2124, 338, 88, 5433, 358, 220, 10185, 3548, 1279, 91, 437, 1659,
      5239, 91, 29},
     37},
};

static char vocab_dir[4096];

// NULL (after a SKIP line) when the shared data is absent.
static pf_tokenizer *load_gpt2(void) {
    const char *data = pf_test_data_dir("GPT-2 vocabulary");
    if (!data) return NULL;
    snprintf(vocab_dir, sizeof vocab_dir, "%s/gpt2", data);
    pf_tokenizer *t = pf_tokenizer_load(vocab_dir);
    ck_assert_msg(t, "load %s: %s", vocab_dir, pf_errmsg());
    return t;
}

static uint64_t fnv1a_ids(const int32_t *ids, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 4; k++)
            h = (h ^ (((uint32_t)ids[i] >> (8 * k)) & 0xff)) * 0x100000001b3ull;
    return h;
}

START_TEST(test_reference_cases) {
    pf_tokenizer *t = load_gpt2();
    if (!t) return;
    ck_assert_int_eq(pf_tokenizer_vocab_size(t), 50257);
    ck_assert_int_eq(pf_tokenizer_eot(t), 50256);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        pf_ids ids = {0};
        ck_assert_msg(pf_tokenizer_encode(t, cases[c].text, strlen(cases[c].text), &ids) == 0,
                      "%s: %s", cases[c].name, pf_errmsg());
        ck_assert_msg(ids.n == cases[c].n, "%s: %zu ids, expected %zu", cases[c].name, ids.n,
                      cases[c].n);
        for (size_t i = 0; i < ids.n; i++)
            ck_assert_msg(ids.data[i] == cases[c].ids[i], "%s: id %zu is %d, expected %d",
                          cases[c].name, i, ids.data[i], cases[c].ids[i]);
        size_t len;
        char *back = pf_tokenizer_decode(t, ids.data, ids.n, &len);
        ck_assert_msg(len == strlen(cases[c].text) && !memcmp(back, cases[c].text, len),
                      "%s: round trip gave '%s'", cases[c].name, back);
        free(back);
        pf_ids_free(&ids);
    }
    pf_tokenizer_free(t);
}
END_TEST

START_TEST(test_decode_tokens) {
    pf_tokenizer *t = load_gpt2();
    if (!t) return;
    size_t len;
    const char *s = pf_tokenizer_token(t, 50256, &len);
    ck_assert(s && len == 13 && !memcmp(s, "<|endoftext|>", 13));
    s = pf_tokenizer_token(t, 995, &len);  // " world": Ġ spells the space byte
    ck_assert(s && len == 6 && !memcmp(s, " world", 6));
    s = pf_tokenizer_token(t, 198, &len);
    ck_assert(s && len == 1 && s[0] == '\n');
    ck_assert_ptr_null(pf_tokenizer_token(t, 50257, &len));
    ck_assert_ptr_null(pf_tokenizer_token(t, -1, &len));
    int32_t bad[] = {15496, 50257};
    ck_assert_ptr_null(pf_tokenizer_decode(t, bad, 2, NULL));
    ck_assert_ptr_nonnull(strstr(pf_errmsg(), "position 1"));
    // The end-of-text string in a text is ordinary text, never the special id.
    pf_ids ids = {0};
    ck_assert_int_eq(pf_tokenizer_encode(t, "<|endoftext|>", 13, &ids), 0);
    for (size_t i = 0; i < ids.n; i++) ck_assert_int_ne(ids.data[i], 50256);
    pf_ids_free(&ids);
    pf_tokenizer_free(t);
}
END_TEST

static void expect_utf8_error(pf_tokenizer *t, const char *s, size_t len, size_t offset) {
    pf_ids ids = {0};
    ck_assert_msg(pf_tokenizer_encode(t, s, len, &ids) == -1, "accepted invalid UTF-8 at %zu",
                  offset);
    char want[64];
    snprintf(want, sizeof want, "byte offset %zu", offset);
    ck_assert_msg(strstr(pf_errmsg(), want), "message '%s' lacks '%s'", pf_errmsg(), want);
    pf_ids_free(&ids);
}

START_TEST(test_invalid_utf8) {
    pf_tokenizer *t = load_gpt2();
    if (!t) return;
    expect_utf8_error(t, "abc\xff", 4, 3);
    expect_utf8_error(t, "ab\xc0\xaf", 4, 2);            // overlong '/'
    expect_utf8_error(t, "x\xed\xa0\x80y", 5, 1);         // surrogate U+D800
    expect_utf8_error(t, "\xf4\x90\x80\x80", 4, 0);       // past U+10FFFF
    expect_utf8_error(t, "caf\xc3", 4, 3);                // cut at the end of the input
    expect_utf8_error(t, "0123456789\x80", 11, 10);       // stray continuation after ASCII
    // A character cut by the end of a streamed piece is not an error: it waits for more.
    pf_ids ids = {0};
    size_t consumed;
    const char *cut = "hello world caf\xc3", *bad = "a b c \xff d e f g";
    ck_assert_int_eq(pf_tokenizer_encode_stream(t, cut, 16, false, &ids, &consumed), 0);
    ck_assert_uint_le(consumed, 12);
    ck_assert_int_eq(pf_tokenizer_encode_stream(t, bad, 15, false, &ids, &consumed), -1);
    ck_assert_uint_eq(consumed, 6);
    bool truncated;
    ck_assert_uint_eq(pf_utf8_prefix("\xe6\x97\xa5\xe6\x97", 5, &truncated), 3);
    ck_assert(truncated);
    ck_assert_uint_eq(pf_utf8_prefix("\xe6\x97\xa5\xe6\x41", 5, &truncated), 3);
    ck_assert(!truncated);
    pf_ids_free(&ids);
    pf_tokenizer_free(t);
}
END_TEST

// Encodes text in pieces of `step` bytes as pfdata does, keeping what the stream holds back.
static void encode_chunked(pf_tokenizer *t, const char *text, size_t n, size_t step,
                           pf_ids *out) {
    size_t start = 0, end = 0;
    do {
        end = end + step < n ? end + step : n;
        size_t consumed;
        ck_assert_msg(pf_tokenizer_encode_stream(t, text + start, end - start, end == n, out,
                                                 &consumed) == 0, "%s", pf_errmsg());
        start += consumed;
    } while (end < n);
    ck_assert_uint_eq(start, n);
}

static void expect_chunked_equal(pf_tokenizer *t, const char *text, size_t n) {
    pf_ids whole = {0};
    ck_assert_int_eq(pf_tokenizer_encode(t, text, n, &whole), 0);
    const size_t steps[] = {1, 2, 3, 5, 64, 4093};
    for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
        pf_ids part = {0};
        encode_chunked(t, text, n, steps[s], &part);
        ck_assert_msg(part.n == whole.n, "step %zu: %zu ids, whole text %zu", steps[s], part.n,
                      whole.n);
        ck_assert_msg(!memcmp(part.data, whole.data, whole.n * sizeof *whole.data),
                      "step %zu: ids differ from the whole-text encoding", steps[s]);
        pf_ids_free(&part);
    }
    pf_ids_free(&whole);
}

START_TEST(test_stream_equals_whole) {
    pf_tokenizer *t = load_gpt2();
    if (!t) return;
    // Whitespace runs before words, spaces before newlines, contractions and multi-byte
    // characters cut at every position: where a naive split changes the pre-tokens.
    const char *tricky = "a  \n\n  b\n\n\nc   d 's 'll x'd  \t\n \xe6\x97\xa5\xe6\x9c\xac  "
                         "\xf0\x9f\x9a\x80\xf0\x9f\x9a\x80 12 345 !! ?\n   \n\t  ";
    expect_chunked_equal(t, tricky, strlen(tricky));
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        expect_chunked_equal(t, cases[c].text, strlen(cases[c].text));
    const char *data = pf_test_data_dir("wikitext-2 streaming");
    if (data) {
        char path[4096], *text;
        size_t n;
        snprintf(path, sizeof path, "%s/wikitext-2/valid.txt", data);
        ck_assert_msg(pf_read_file(path, &text, &n) == 0, "%s", pf_errmsg());
        expect_chunked_equal(t, text, n < 100000 ? n : 100000);
        free(text);
    }
    pf_tokenizer_free(t);
}
END_TEST

// Whole corpora: token count and FNV-1a of the ids from the reference, and the round trip.
static void check_corpus(pf_tokenizer *t, const char *rel, size_t want_n, uint64_t want_hash) {
    const char *data = pf_test_data_dir(rel);
    if (!data) return;
    char path[4096], *text;
    size_t n;
    snprintf(path, sizeof path, "%s/%s", data, rel);
    ck_assert_msg(pf_read_file(path, &text, &n) == 0, "%s", pf_errmsg());
    pf_ids ids = {0};
    double t0 = pf_now();
    ck_assert_msg(pf_tokenizer_encode(t, text, n, &ids) == 0, "%s: %s", rel, pf_errmsg());
    double dt = pf_now() - t0;
    printf("tokenizer: %s: %zu bytes -> %zu tokens in %.3f s (%.1f MB/s)\n", rel, n, ids.n, dt,
           (double)n / dt / 1e6);
    ck_assert_msg(ids.n == want_n, "%s: %zu tokens, the reference gives %zu", rel, ids.n, want_n);
    ck_assert_msg(fnv1a_ids(ids.data, ids.n) == want_hash, "%s: ids differ from the reference",
                  rel);
    size_t len;
    char *back = pf_tokenizer_decode(t, ids.data, ids.n, &len);
    ck_assert_msg(back && len == n && !memcmp(back, text, n), "%s: round trip differs", rel);
    free(back);
    free(text);
    pf_ids_free(&ids);
}

START_TEST(test_corpora) {
    pf_tokenizer *t = load_gpt2();
    if (!t) return;
    check_corpus(t, "tinyshakespeare/input.txt", 338025, 0xe22fcd868ca90167ull);
    check_corpus(t, "wikitext-2/valid.txt", 258659, 0xc72cc3b3b31baa00ull);
    pf_tokenizer_free(t);
}
END_TEST

// ---- long pre-tokens against the reference's quadratic merge loop ----------------------
// The library merges with a heap; here is the reference's loop (encoder.py's bpe()) on
// strings: find the lowest-ranked adjacent pair, merge all its occurrences left to right in
// one pass, repeat. Only for words of ASCII letters, which GPT-2's byte alphabet spells as
// themselves, so vocab.bpe lines and token strings need no mapping.

typedef struct {
    char **key;  // NUL-terminated; NULL: free slot
    int32_t *val;
    size_t mask;
} str_map;

static uint64_t fnv1a_bytes(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h;
}

static size_t map_slot(const str_map *m, const char *s, size_t n) {
    size_t i = fnv1a_bytes(s, n) & m->mask;
    while (m->key[i] && !(strlen(m->key[i]) == n && !memcmp(m->key[i], s, n)))
        i = (i + 1) & m->mask;
    return i;
}

static void map_put(str_map *m, const char *s, size_t n, int32_t v) {
    size_t i = map_slot(m, s, n);
    if (!m->key[i]) m->key[i] = strndup(s, n);
    m->val[i] = v;  // a repeated merge keeps its last rank, as the reference's dict does
}

static int32_t map_get(const str_map *m, const char *s, size_t n) {
    size_t i = map_slot(m, s, n);
    return m->key[i] ? m->val[i] : -1;
}

static void map_free(str_map *m) {
    for (size_t i = 0; i <= m->mask; i++) free(m->key[i]);
    free(m->key);
    free(m->val);
}

static bool all_letters(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z'))) return false;
    return n > 0;
}

typedef struct {
    str_map rank;  // "left right" -> line order in vocab.bpe, for letter-only merges
    str_map id;    // token string -> id, for letter-only tokens
} letter_vocab;

static void letter_vocab_load(letter_vocab *v, const pf_tokenizer *t) {
    const size_t cap = 1 << 17;
    v->rank = (str_map){calloc(cap, sizeof(char *)), calloc(cap, sizeof(int32_t)), cap - 1};
    v->id = (str_map){calloc(cap, sizeof(char *)), calloc(cap, sizeof(int32_t)), cap - 1};
    char path[4200], *data;
    size_t len;
    snprintf(path, sizeof path, "%s/vocab.bpe", vocab_dir);
    ck_assert_msg(pf_read_file(path, &data, &len) == 0, "%s", pf_errmsg());
    int32_t rank = 0;
    int lineno = 0;
    for (char *line = data, *next; line < data + len; line = next) {
        char *nl = memchr(line, '\n', (size_t)(data + len - line));
        char *end = nl ? nl : data + len;
        next = nl ? nl + 1 : data + len;
        if (end > line && end[-1] == '\r') end--;
        if (end == line || (++lineno == 1 && line[0] == '#')) continue;
        char *sp = memchr(line, ' ', (size_t)(end - line));
        if (sp && all_letters(line, (size_t)(sp - line)) &&
            all_letters(sp + 1, (size_t)(end - sp - 1)))
            map_put(&v->rank, line, (size_t)(end - line), rank);
        rank++;
    }
    free(data);
    for (int32_t id = 0; id < pf_tokenizer_vocab_size(t); id++) {
        size_t n;
        const char *s = pf_tokenizer_token(t, id, &n);
        if (all_letters(s, n)) map_put(&v->id, s, n, id);
    }
}

static void letter_vocab_free(letter_vocab *v) {
    map_free(&v->rank);
    map_free(&v->id);
}

// Appends the reference's ids for the single pre-token w[0, n) of ASCII letters. Symbol i
// is w[start[i], start[i + 1]).
static void reference_bpe(const letter_vocab *v, const char *w, size_t n, pf_ids *out) {
    size_t *start = malloc((n + 1) * sizeof *start), count = n;
    char *key = malloc(n + 2);
    for (size_t i = 0; i <= n; i++) start[i] = i;
#define SYM_LEN(i) (start[(i) + 1] - start[i])
#define SYM_IS(i, p, k) (SYM_LEN(i) == (k) && !memcmp(w + start[i], p, k))
    for (;;) {
        int32_t best = INT32_MAX;
        size_t at = 0;
        for (size_t i = 0; i + 1 < count; i++) {
            size_t la = SYM_LEN(i), lb = SYM_LEN(i + 1);
            memcpy(key, w + start[i], la);
            key[la] = ' ';
            memcpy(key + la + 1, w + start[i + 1], lb);
            int32_t r = map_get(&v->rank, key, la + 1 + lb);
            if (r >= 0 && r < best) best = r, at = i;
        }
        if (best == INT32_MAX) break;
        const char *a = w + start[at], *b = w + start[at + 1];  // w never changes
        size_t la = SYM_LEN(at), lb = SYM_LEN(at + 1), j = 0;
        for (size_t i = 0; i < count;) {
            bool merge = i + 1 < count && SYM_IS(i, a, la) && SYM_IS(i + 1, b, lb);
            start[j++] = start[i];
            i += merge ? 2 : 1;
        }
        start[j] = n;
        count = j;
    }
    for (size_t i = 0; i < count; i++) {
        int32_t id = map_get(&v->id, w + start[i], SYM_LEN(i));
        ck_assert_msg(id >= 0, "reference: no token for '%.*s'", (int)SYM_LEN(i), w + start[i]);
        pf_ids_push(out, id);
    }
#undef SYM_LEN
#undef SYM_IS
    free(key);
    free(start);
}

// Encodes w[0, n) (ASCII letters: one pre-token) and, with v, compares with reference_bpe;
// always checks the round trip. Returns the seconds pf_tokenizer_encode took.
static double expect_letters_like_reference(pf_tokenizer *t, const letter_vocab *v,
                                            const char *what, const char *w, size_t n) {
    pf_ids got = {0}, want = {0};
    double t0 = pf_now();
    ck_assert_msg(pf_tokenizer_encode(t, w, n, &got) == 0, "%s: %s", what, pf_errmsg());
    double dt = pf_now() - t0;
    if (v) {
        reference_bpe(v, w, n, &want);
        ck_assert_msg(got.n == want.n, "%s (%zu letters): %zu ids, the reference gives %zu",
                      what, n, got.n, want.n);
        for (size_t i = 0; i < got.n; i++)
            ck_assert_msg(got.data[i] == want.data[i],
                          "%s (%zu letters): id %zu is %d, the reference gives %d", what, n, i,
                          got.data[i], want.data[i]);
    }
    size_t len;
    char *back = pf_tokenizer_decode(t, got.data, got.n, &len);
    ck_assert_msg(back && len == n && !memcmp(back, w, n), "%s: round trip differs", what);
    free(back);
    pf_ids_free(&got);
    pf_ids_free(&want);
    return dt;
}

static uint64_t xorshift(uint64_t *x) {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static void random_letters(char *w, size_t n, const char *alphabet, uint64_t *x) {
    size_t k = strlen(alphabet);
    for (size_t i = 0; i < n; i++) w[i] = alphabet[xorshift(x) % k];
}

START_TEST(test_long_pretokens) {
    pf_tokenizer *t = load_gpt2();
    if (!t) return;
    letter_vocab v;
    letter_vocab_load(&v, t);
    enum { LONG = 100000 };
    char *w = malloc(LONG), what[64];
    uint64_t x = 0x9e3779b97f4a7c15ull;
    // Runs of one letter and of a repeated pair: every merge overlaps the next occurrence.
    for (size_t n = 1; n <= 70; n++) {
        memset(w, 'a', n);
        expect_letters_like_reference(t, &v, "aaa...", w, n);
        for (size_t i = 0; i < n; i++) w[i] = "ab"[i % 2];
        expect_letters_like_reference(t, &v, "abab...", w, n);
    }
    memset(w, 'e', 2001);
    expect_letters_like_reference(t, &v, "eee...", w, 2001);
    // Random words over three letters: long runs of equal pairs, overlapping, at every rank.
    const char *alphabets[] = {"abc", "aeo", "lls", "est", "nnn", "ing", "xyz", "aAb"};
    for (size_t a = 0; a < sizeof alphabets / sizeof alphabets[0]; a++) {
        for (int k = 0; k < 8; k++) {
            size_t n = 1 + xorshift(&x) % 2000;
            random_letters(w, n, alphabets[a], &x);
            snprintf(what, sizeof what, "random over '%s' #%d", alphabets[a], k);
            expect_letters_like_reference(t, &v, what, w, n);
        }
    }
    // Many distinct merges: the letters of wikitext-2 with everything else dropped.
    const char *data = pf_test_data_dir("wikitext-2 letters");
    if (data) {
        char path[4096], *text;
        size_t n, k = 0;
        snprintf(path, sizeof path, "%s/wikitext-2/valid.txt", data);
        ck_assert_msg(pf_read_file(path, &text, &n) == 0, "%s", pf_errmsg());
        for (size_t i = 0; i < n && k < LONG; i++)
            if (all_letters(text + i, 1)) w[k++] = text[i];
        free(text);
        expect_letters_like_reference(t, &v, "wikitext-2 letters", w, k < 20000 ? k : 20000);
        double dt = expect_letters_like_reference(t, NULL, "wikitext-2 letters", w, k);
        printf("tokenizer: one pre-token of %zu letters of wikitext-2 in %.3f s\n", k, dt);
    }
    // 100,000 letters in one pre-token: against the reference over a small alphabet (few
    // distinct merges keep the reference fast), and over all 26 letters (many).
    random_letters(w, LONG, "abcd", &x);
    double dt = expect_letters_like_reference(t, &v, "100k over 'abcd'", w, LONG);
    printf("tokenizer: one pre-token of %d letters over 'abcd' in %.3f s\n", LONG, dt);
    random_letters(w, LONG, "abcdefghijklmnopqrstuvwxyz", &x);
    dt = expect_letters_like_reference(t, NULL, "100k over a-z", w, LONG);
    printf("tokenizer: one pre-token of %d letters over a-z in %.3f s\n", LONG, dt);
    free(w);
    letter_vocab_free(&v);
    pf_tokenizer_free(t);
}
END_TEST

// Writes `content` to DIR/name.
static void write_file(const char *dir, const char *name, const char *content) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    ck_assert_msg(f, "cannot write %s", path);
    fputs(content, f);
    fclose(f);
}

static void expect_load_error(const char *dir, const char *needle) {
    ck_assert_ptr_null(pf_tokenizer_load(dir));
    ck_assert_msg(strstr(pf_errmsg(), needle), "message '%s' lacks '%s'", pf_errmsg(), needle);
}

START_TEST(test_bad_vocabulary) {
    char dir[] = "/tmp/pf_test_vocab_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    expect_load_error(dir, "encoder.json");
    write_file(dir, "encoder.json", "{\"a\": 0, \"b\": ");
    expect_load_error(dir, "encoder.json: not a JSON object");
    write_file(dir, "encoder.json", "{\"a\": 0, \"b\": 2}");
    expect_load_error(dir, "ids must be 0..N-1");
    write_file(dir, "encoder.json", "{\"a\": 0, \"b\": 1}");
    expect_load_error(dir, "vocab.bpe");
    write_file(dir, "vocab.bpe", "#version: 0.2\na b\n");
    expect_load_error(dir, "vocab.bpe line 2");
    write_file(dir, "vocab.bpe", "#version: 0.2\nab\n");
    expect_load_error(dir, "two tokens separated by one space");
    char path[4200];
    snprintf(path, sizeof path, "%s/encoder.json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/vocab.bpe", dir);
    unlink(path);
    rmdir(dir);
}
END_TEST

// A vocabulary where a merge makes a pair ranked below it: "aa a" (rank 0) before "a a"
// (rank 1). The reference merges every "a a" of the word in one pass before it looks at the
// "aa a" pairs that pass made, so "aaaa" is aa aa, not aaa a; "aaaaa" is aa aaa (expected
// ids from encoder.py's bpe() with these two ranks).
START_TEST(test_merge_pass_order) {
    char dir[] = "/tmp/pf_test_vocab_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char *json = malloc(256 * 16 + 256), *p = json;
    p += sprintf(p, "{");
    for (int b = 0, extra = 0; b < 256; b++) {  // bytes_to_unicode, as \u escapes
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        p += sprintf(p, "\"\\u%04x\": %d, ", printable ? b : 256 + extra++, b);
    }
    sprintf(p, "\"aa\": 256, \"aaa\": 257, \"<|endoftext|>\": 258}");
    write_file(dir, "encoder.json", json);
    free(json);
    write_file(dir, "vocab.bpe", "#version: 0.2\naa a\na a\n");
    pf_tokenizer *t = pf_tokenizer_load(dir);
    ck_assert_msg(t, "%s", pf_errmsg());
    const struct {
        const char *text;
        int32_t ids[4];
        size_t n;
    } want[] = {{"aa", {256}, 1},           {"aaa", {257}, 1},
                {"aaaa", {256, 256}, 2},    {"aaaaa", {256, 257}, 2},
                {"aaaaaa", {256, 256, 256}, 3}, {"aaaaaaa", {256, 256, 257}, 3}};
    for (size_t c = 0; c < sizeof want / sizeof want[0]; c++) {
        pf_ids ids = {0};
        ck_assert_int_eq(pf_tokenizer_encode(t, want[c].text, strlen(want[c].text), &ids), 0);
        ck_assert_msg(ids.n == want[c].n, "%s: %zu ids, expected %zu", want[c].text, ids.n,
                      want[c].n);
        for (size_t i = 0; i < ids.n; i++)
            ck_assert_msg(ids.data[i] == want[c].ids[i], "%s: id %zu is %d, expected %d",
                          want[c].text, i, ids.data[i], want[c].ids[i]);
        pf_ids_free(&ids);
    }
    pf_tokenizer_free(t);
    char path[4200];
    snprintf(path, sizeof path, "%s/encoder.json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/vocab.bpe", dir);
    unlink(path);
    rmdir(dir);
}
END_TEST

Suite *pf_test_suite(void) {
    Suite *s = suite_create("tokenizer");
    TCase *tc = tcase_create("gpt2");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_reference_cases);
    tcase_add_test(tc, test_decode_tokens);
    tcase_add_test(tc, test_invalid_utf8);
    tcase_add_test(tc, test_stream_equals_whole);
    tcase_add_test(tc, test_corpora);
    tcase_add_test(tc, test_long_pretokens);
    tcase_add_test(tc, test_bad_vocabulary);
    tcase_add_test(tc, test_merge_pass_order);
    suite_add_tcase(s, tc);
    return s;
}
