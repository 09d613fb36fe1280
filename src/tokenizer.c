// tokenizer.c: GPT-2 byte-level BPE. Tokens are handled as ids throughout: ids and token
// strings correspond one to one, so merging the pair of ids (a, b) is the reference's merge
// of the pair of strings, and the rank table is a hash map keyed by the id pair.
#include "tokenizer.h"

#include <cJSON.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "common.h"

// GPT-2's pattern with \s spelled out as the Unicode White_Space set, which is what the
// reference's `regex` module matches; PCRE2's \s also takes U+180E, which White_Space
// dropped in Unicode 6.3. \p{L} and \p{N} follow the Unicode tables of the PCRE2 build.
#define WS "\\t-\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}" \
           "\\x{205F}\\x{3000}"
static const char GPT2_PATTERN[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+"
                                   "| ?[^" WS "\\p{L}\\p{N}]+|[" WS "]+(?![^" WS "])|[" WS "]+";
#undef WS

// The per-word cache: pre-tokens of up to CACHE_MAX_WORD bytes and their ids. Text repeats
// its words, so most pre-tokens skip the merge loop. Emptied whole when full.
enum {
    CACHE_SLOTS = 1 << 16,
    CACHE_MAX_WORD = 64,
    CACHE_KEY_POOL = 1 << 21,
    CACHE_ID_POOL = 1 << 19,
    BYTE_ALPHABET = 324,  // bytes_to_unicode maps bytes to code points below 256 + 68
};

typedef struct {
    uint64_t hash;
    uint32_t key_off, ids_off;
    uint16_t key_len, n_ids;  // key_len 0: free slot
} cache_slot;

struct pf_tokenizer {
    int vocab_size, eot;
    char *bytes;           // all token bytes, concatenated in id order
    uint32_t *off;         // [vocab_size + 1]: token id -> bytes[off[id], off[id + 1])
    int32_t byte_id[256];  // the token of each single byte
    uint64_t *merge_key;   // [merge_mask + 1] open addressing: left << 32 | right, or EMPTY
    uint32_t *merge_rank;  // [merge_mask + 1] line order in vocab.bpe
    int32_t *merge_id;     // [merge_mask + 1] the token the pair merges into
    size_t merge_mask;
    pcre2_code *re;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit_stack;
    // Merge-loop scratch for one pre-token of n <= sym_cap bytes (see bpe()).
    int32_t *sym;        // [sym_cap] the token starting at each byte, -1 inside a token
    uint32_t *next;      // [sym_cap] the next token's start, NO_POS after the last
    uint32_t *prev;      // [sym_cap] the previous token's start, NO_POS before the first
    uint64_t *heap;      // [3 * sym_cap] candidate pairs: rank << 32 | start, a min-heap
    uint32_t *batch;     // [sym_cap] the starts of the pairs of one rank, left to right
    size_t sym_cap;
    cache_slot *cache;  // [CACHE_SLOTS]
    char *cache_keys;   // [CACHE_KEY_POOL]
    int32_t *cache_ids; // [CACHE_ID_POOL]
    size_t cache_count, cache_keys_used, cache_ids_used;
};

#define EMPTY_KEY UINT64_MAX
#define NO_POS UINT32_MAX

static uint64_t fnv1a(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    return x ^ (x >> 33);
}

static size_t pow2_at_least(size_t n) {
    size_t p = 1;
    while (p < n) p *= 2;
    return p;
}

static void ids_append(pf_ids *v, const int32_t *ids, size_t n) {
    if (v->n + n > v->cap) {
        v->cap = pow2_at_least(v->n + n < 1024 ? 1024 : v->n + n);
        v->data = pf_realloc(v->data, v->cap * sizeof *v->data);
    }
    memcpy(v->data + v->n, ids, n * sizeof *ids);
    v->n += n;
}

void pf_ids_push(pf_ids *v, int32_t id) { ids_append(v, &id, 1); }

void pf_ids_free(pf_ids *v) {
    free(v->data);
    *v = (pf_ids){0};
}

// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 bytes
// for 256, 257, ... in byte order. byte_of[cp] is the inverse (-1 off the alphabet).
static void byte_alphabet(int16_t byte_of[BYTE_ALPHABET]) {
    for (int cp = 0; cp < BYTE_ALPHABET; cp++) byte_of[cp] = -1;
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        byte_of[printable ? b : 256 + extra++] = (int16_t)b;
    }
}

// Spells a vocabulary string (UTF-8 over the byte alphabet) as the bytes it stands for;
// returns the byte count, or -1 if a character is off the alphabet.
static int alphabet_to_bytes(const int16_t *byte_of, const char *s, size_t n, char *dst) {
    const unsigned char *u = (const unsigned char *)s;
    int len = 0;
    for (size_t i = 0; i < n;) {
        unsigned cp;
        if (u[i] < 0x80) {
            cp = u[i++];
        } else if ((u[i] & 0xE0) == 0xC0 && i + 1 < n && (u[i + 1] & 0xC0) == 0x80) {
            cp = (u[i] & 0x1Fu) << 6 | (u[i + 1] & 0x3Fu);
            i += 2;
        } else {
            return -1;
        }
        if (cp >= BYTE_ALPHABET || byte_of[cp] < 0) return -1;
        dst[len++] = (char)byte_of[cp];
    }
    return len;
}

// ---- loading ---------------------------------------------------------------------------

// Token bytes -> id, used while reading vocab.bpe. tab: [mask + 1] ids or -1.
typedef struct {
    int32_t *tab;
    size_t mask;
} string_index;

static int32_t string_index_find(const pf_tokenizer *t, const string_index *ix, const char *s,
                                 size_t n) {
    for (size_t i = fnv1a(s, n) & ix->mask;; i = (i + 1) & ix->mask) {
        int32_t id = ix->tab[i];
        if (id < 0) return -1;
        if (t->off[id + 1] - t->off[id] == n && !memcmp(t->bytes + t->off[id], s, n)) return id;
    }
}

static void string_index_build(const pf_tokenizer *t, string_index *ix) {
    ix->mask = pow2_at_least(2 * (size_t)t->vocab_size) - 1;
    ix->tab = pf_malloc((ix->mask + 1) * sizeof *ix->tab);
    memset(ix->tab, 0xff, (ix->mask + 1) * sizeof *ix->tab);
    for (int32_t id = 0; id < t->vocab_size; id++) {
        size_t n = t->off[id + 1] - t->off[id];
        size_t i = fnv1a(t->bytes + t->off[id], n) & ix->mask;
        while (ix->tab[i] >= 0) i = (i + 1) & ix->mask;
        ix->tab[i] = id;
    }
}

static int read_vocab_file(const char *path, char **data, size_t *len) {
    if (pf_read_file(path, data, len) == 0) return 0;
    char why[1024];
    snprintf(why, sizeof why, "%s", pf_errmsg());  // pf_error() rewrites pf_errmsg()'s buffer
    pf_error("%s (the vocabulary directory must hold GPT-2's encoder.json and vocab.bpe)", why);
    return -1;
}

static int load_encoder(pf_tokenizer *t, const char *dir, const int16_t *byte_of) {
    char path[4096], *data;
    size_t len;
    snprintf(path, sizeof path, "%s/encoder.json", dir);
    if (read_vocab_file(path, &data, &len)) return -1;
    cJSON *root = cJSON_ParseWithLength(data, len);
    int rc = -1;
    if (!root || !cJSON_IsObject(root)) {
        const char *at = cJSON_GetErrorPtr();
        pf_error("%s: not a JSON object of token -> id (parse error near byte %zu)", path,
                 at && at >= data && at <= data + len ? (size_t)(at - data) : (size_t)0);
        goto done;
    }
    // Pass 1: the byte length of every id; pass 2: the bytes, in id order.
    int count = cJSON_GetArraySize(root), max_id = -1;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > 1e7 ||
            e->valuedouble != (double)e->valueint) {
            pf_error("%s: key \"%s\" has a value that is not a token id", path, e->string);
            goto done;
        }
        if (e->valueint > max_id) max_id = e->valueint;
    }
    if (max_id + 1 != count) {
        pf_error("%s: %d entries but ids up to %d (ids must be 0..N-1, each once)", path,
                 count, max_id);
        goto done;
    }
    t->vocab_size = count;
    int *tok_len = pf_malloc((size_t)count * sizeof *tok_len);
    for (int i = 0; i < count; i++) tok_len[i] = -1;
    size_t total = 0;
    char *buf = pf_malloc(len + 1);
    cJSON_ArrayForEach(e, root) {
        int n = alphabet_to_bytes(byte_of, e->string, strlen(e->string), buf);
        if (n < 0 || tok_len[e->valueint] >= 0) {
            pf_error(n < 0 ? "%s: key \"%s\" has a character outside GPT-2's byte alphabet"
                           : "%s: key \"%s\" repeats id %d",
                     path, e->string, e->valueint);
            free(buf);
            free(tok_len);
            goto done;
        }
        tok_len[e->valueint] = n;
        total += (size_t)n;
    }
    t->off = pf_malloc(((size_t)count + 1) * sizeof *t->off);
    t->off[0] = 0;
    for (int i = 0; i < count; i++) t->off[i + 1] = t->off[i] + (uint32_t)tok_len[i];
    t->bytes = pf_malloc(total + 1);
    cJSON_ArrayForEach(e, root) {
        alphabet_to_bytes(byte_of, e->string, strlen(e->string), t->bytes + t->off[e->valueint]);
    }
    free(buf);
    free(tok_len);
    rc = 0;
done:
    cJSON_Delete(root);
    free(data);
    return rc;
}

static void merge_insert(pf_tokenizer *t, int32_t a, int32_t b, uint32_t rank, int32_t id) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t i = mix64(key) & t->merge_mask;
    while (t->merge_key[i] != EMPTY_KEY && t->merge_key[i] != key) i = (i + 1) & t->merge_mask;
    // A repeated pair keeps its last rank, as the reference's dict does.
    t->merge_key[i] = key;
    t->merge_rank[i] = rank;
    t->merge_id[i] = id;
}

static int load_merges(pf_tokenizer *t, const char *dir, const int16_t *byte_of) {
    char path[4096], *data;
    size_t len;
    snprintf(path, sizeof path, "%s/vocab.bpe", dir);
    if (read_vocab_file(path, &data, &len)) return -1;
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += data[i] == '\n';
    size_t cap = pow2_at_least(2 * lines);
    t->merge_mask = cap - 1;
    t->merge_key = pf_malloc(cap * sizeof *t->merge_key);
    t->merge_rank = pf_malloc(cap * sizeof *t->merge_rank);
    t->merge_id = pf_malloc(cap * sizeof *t->merge_id);
    memset(t->merge_key, 0xff, cap * sizeof *t->merge_key);

    string_index ix;
    string_index_build(t, &ix);
    char *ab = pf_malloc(len + 1);  // the two tokens' bytes, back to back
    int rc = -1, lineno = 0;
    uint32_t rank = 0;
    for (char *line = data, *next; line < data + len; line = next) {
        char *nl = memchr(line, '\n', (size_t)(data + len - line));
        char *end = nl ? nl : data + len;
        next = nl ? nl + 1 : data + len;
        lineno++;
        if (end > line && end[-1] == '\r') end--;
        if (end == line || (lineno == 1 && line[0] == '#')) continue;  // "#version: 0.2"
        char *sp = memchr(line, ' ', (size_t)(end - line));
        int na = sp ? alphabet_to_bytes(byte_of, line, (size_t)(sp - line), ab) : -1;
        int nb = na >= 0 ? alphabet_to_bytes(byte_of, sp + 1, (size_t)(end - sp - 1), ab + na) : -1;
        if (na <= 0 || nb <= 0) {
            pf_error("%s line %d: expected two tokens separated by one space, got '%.*s'", path,
                     lineno, (int)(end - line), line);
            goto done;
        }
        int32_t ia = string_index_find(t, &ix, ab, (size_t)na);
        int32_t ib = string_index_find(t, &ix, ab + na, (size_t)nb);
        int32_t iab = string_index_find(t, &ix, ab, (size_t)(na + nb));
        if (ia < 0 || ib < 0 || iab < 0) {
            pf_error("%s line %d: merge '%.*s' uses or makes a token missing from encoder.json "
                     "(are the two files from the same vocabulary?)",
                     path, lineno, (int)(end - line), line);
            goto done;
        }
        merge_insert(t, ia, ib, rank++, iab);
    }
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        if ((t->byte_id[b] = string_index_find(t, &ix, &c, 1)) < 0) {
            pf_error("%s/encoder.json: no token for byte 0x%02x", dir, b);
            goto done;
        }
    }
    if ((t->eot = string_index_find(t, &ix, "<|endoftext|>", 13)) < 0) {
        pf_error("%s/encoder.json: no <|endoftext|> token", dir);
        goto done;
    }
    rc = 0;
done:
    free(ix.tab);
    free(ab);
    free(data);
    return rc;
}

static int compile_pattern(pf_tokenizer *t) {
    int err;
    PCRE2_SIZE at;
    t->re = pcre2_compile((PCRE2_SPTR)GPT2_PATTERN, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
                          &err, &at, NULL);
    if (!t->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        pf_error("cannot compile the GPT-2 pre-tokenizer pattern at %zu: %s", (size_t)at,
                 (const char *)msg);
        return -1;
    }
    t->md = pcre2_match_data_create_from_pattern(t->re, NULL);
    t->mctx = pcre2_match_context_create(NULL);
    PF_ASSERT(t->md && t->mctx);
    // JIT when the library has it (several times faster); the interpreter otherwise. A long
    // whitespace run backtracks through \s+(?!\S), hence a JIT stack above the 32 KiB default.
    if (pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE) == 0) {
        t->jit_stack = pcre2_jit_stack_create(32 * 1024, 16 * 1024 * 1024, NULL);
        if (t->jit_stack) pcre2_jit_stack_assign(t->mctx, NULL, t->jit_stack);
    }
    return 0;
}

pf_tokenizer *pf_tokenizer_load(const char *vocab_dir) {
    pf_tokenizer *t = pf_calloc(1, sizeof *t);
    int16_t byte_of[BYTE_ALPHABET];
    byte_alphabet(byte_of);
    if (load_encoder(t, vocab_dir, byte_of) || load_merges(t, vocab_dir, byte_of) ||
        compile_pattern(t)) {
        pf_tokenizer_free(t);
        return NULL;
    }
    t->cache = pf_calloc(CACHE_SLOTS, sizeof *t->cache);
    t->cache_keys = pf_malloc(CACHE_KEY_POOL);
    t->cache_ids = pf_malloc(CACHE_ID_POOL * sizeof *t->cache_ids);
    return t;
}

void pf_tokenizer_free(pf_tokenizer *t) {
    if (!t) return;
    pcre2_match_data_free(t->md);
    pcre2_match_context_free(t->mctx);
    pcre2_jit_stack_free(t->jit_stack);
    pcre2_code_free(t->re);
    free(t->bytes);
    free(t->off);
    free(t->merge_key);
    free(t->merge_rank);
    free(t->merge_id);
    free(t->sym);
    free(t->next);
    free(t->prev);
    free(t->heap);
    free(t->batch);
    free(t->cache);
    free(t->cache_keys);
    free(t->cache_ids);
    free(t);
}

int pf_tokenizer_vocab_size(const pf_tokenizer *t) { return t->vocab_size; }
int pf_tokenizer_eot(const pf_tokenizer *t) { return t->eot; }

// ---- encoding --------------------------------------------------------------------------

// Rank of the pair (a, b), UINT32_MAX if it never merges; *merged gets the resulting token.
static uint32_t merge_rank(const pf_tokenizer *t, int32_t a, int32_t b, int32_t *merged) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (size_t i = mix64(key) & t->merge_mask;; i = (i + 1) & t->merge_mask) {
        if (t->merge_key[i] == key) {
            *merged = t->merge_id[i];
            return t->merge_rank[i];
        }
        if (t->merge_key[i] == EMPTY_KEY) return UINT32_MAX;
    }
}

static void heap_push(uint64_t *h, size_t *n, uint64_t key) {
    size_t i = (*n)++;
    for (; i > 0 && key < h[(i - 1) / 2]; i = (i - 1) / 2) h[i] = h[(i - 1) / 2];
    h[i] = key;
}

static uint64_t heap_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0], last = h[--*n];
    size_t i = 0;
    for (size_t c; (c = 2 * i + 1) < *n; i = c) {
        if (c + 1 < *n && h[c + 1] < h[c]) c++;
        if (last <= h[c]) break;
        h[i] = h[c];
    }
    h[i] = last;
    return top;
}

// Queues the pair of tokens starting at a and b = next[a] if it merges.
static void push_pair(const pf_tokenizer *t, size_t *hn, uint32_t a, uint32_t b) {
    int32_t m;
    uint32_t r = merge_rank(t, t->sym[a], t->sym[b], &m);
    if (r != UINT32_MAX) heap_push(t->heap, hn, (uint64_t)r << 32 | a);
}

// The reference's merge loop on t->sym[0, n): merge every occurrence (left to right, not
// overlapping) of the lowest-ranked adjacent pair until no pair merges; in O(n log n).
// Tokens form a linked list over their start bytes (next, prev; sym[] = -1 inside a token)
// and every adjacent pair that merges has an entry rank << 32 | start in a min-heap; an
// entry goes stale, and is skipped, when a merge changes either token of its pair. A pair
// of tokens has a single rank (merge_insert), so all entries of the lowest rank are the
// occurrences of the reference's best pair, and popping them gives them left to right.
// They are all taken out before any is merged, as the reference's one pass over the word:
// merging (a, b) into ab makes new pairs (x, ab) and (ab, y), never (a, b) again (ab is
// longer than a and b), but a vocabulary may rank them below (a, b), and they must wait
// for the next pass. Taken left to right, an occurrence whose left token was the right
// token of the previous merge is gone (sym = -1) and skipped, as the reference skips it;
// a merge leaves the tokens right of it unchanged, so every other occurrence still stands.
// Writes the final tokens to sym[0, count) and returns the count.
static size_t bpe(pf_tokenizer *t, size_t n) {
    if (n == 0) return 0;
    int32_t *sym = t->sym;
    uint32_t *next = t->next, *prev = t->prev;
    size_t hn = 0;  // heap entries: n - 1 at first, at most 2 more per merge
    for (size_t i = 0; i < n; i++) {
        prev[i] = i > 0 ? (uint32_t)i - 1 : NO_POS;
        next[i] = i + 1 < n ? (uint32_t)i + 1 : NO_POS;
    }
    for (size_t i = 0; i + 1 < n; i++) push_pair(t, &hn, (uint32_t)i, (uint32_t)i + 1);
    while (hn) {
        uint32_t rank = (uint32_t)(t->heap[0] >> 32);
        size_t nb = 0;
        while (hn && (uint32_t)(t->heap[0] >> 32) == rank)
            t->batch[nb++] = (uint32_t)heap_pop(t->heap, &hn);
        for (size_t k = 0; k < nb; k++) {
            uint32_t a = t->batch[k], b = next[a], c;
            int32_t ab;
            if (sym[a] < 0 || b == NO_POS || merge_rank(t, sym[a], sym[b], &ab) != rank)
                continue;  // stale: a was merged into its left, or one of the pair changed
            sym[a] = ab;
            sym[b] = -1;
            next[a] = c = next[b];
            if (c != NO_POS) prev[c] = a;
            if (prev[a] != NO_POS) push_pair(t, &hn, prev[a], a);
            if (c != NO_POS) push_pair(t, &hn, a, c);
        }
    }
    size_t m = 0;
    for (uint32_t i = 0; i != NO_POS; i = next[i]) sym[m++] = sym[i];
    return m;
}

static void cache_clear(pf_tokenizer *t) {
    memset(t->cache, 0, CACHE_SLOTS * sizeof *t->cache);
    t->cache_count = t->cache_keys_used = t->cache_ids_used = 0;
}

static int encode_word(pf_tokenizer *t, const char *w, size_t n, pf_ids *out) {
    bool cacheable = n <= CACHE_MAX_WORD;
    uint64_t h = cacheable ? fnv1a(w, n) : 0;
    size_t slot = h & (CACHE_SLOTS - 1);
    if (cacheable) {
        for (;; slot = (slot + 1) & (CACHE_SLOTS - 1)) {
            const cache_slot *c = &t->cache[slot];
            if (!c->key_len) break;
            if (c->hash == h && c->key_len == n && !memcmp(t->cache_keys + c->key_off, w, n)) {
                ids_append(out, t->cache_ids + c->ids_off, c->n_ids);
                return 0;
            }
        }
    }
    if (n > t->sym_cap) {
        if (n >= NO_POS) {  // positions are 32-bit
            pf_error("a pre-token of %zu bytes (a run of letters, digits, symbols or spaces "
                     "with no break) is over the 4 GiB limit", n);
            return -1;
        }
        t->sym_cap = pow2_at_least(n);
        if (t->sym_cap >= NO_POS) t->sym_cap = NO_POS - 1;
        t->sym = pf_realloc(t->sym, t->sym_cap * sizeof *t->sym);
        t->next = pf_realloc(t->next, t->sym_cap * sizeof *t->next);
        t->prev = pf_realloc(t->prev, t->sym_cap * sizeof *t->prev);
        t->heap = pf_realloc(t->heap, 3 * t->sym_cap * sizeof *t->heap);
        t->batch = pf_realloc(t->batch, t->sym_cap * sizeof *t->batch);
    }
    for (size_t i = 0; i < n; i++) t->sym[i] = t->byte_id[(unsigned char)w[i]];
    size_t m = bpe(t, n);
    ids_append(out, t->sym, m);
    if (!cacheable) return 0;
    if (4 * (t->cache_count + 1) > 3 * CACHE_SLOTS || t->cache_keys_used + n > CACHE_KEY_POOL ||
        t->cache_ids_used + m > CACHE_ID_POOL) {
        cache_clear(t);
        for (slot = h & (CACHE_SLOTS - 1); t->cache[slot].key_len;)
            slot = (slot + 1) & (CACHE_SLOTS - 1);
    }
    t->cache[slot] = (cache_slot){.hash = h,
                                  .key_off = (uint32_t)t->cache_keys_used,
                                  .ids_off = (uint32_t)t->cache_ids_used,
                                  .key_len = (uint16_t)n,
                                  .n_ids = (uint16_t)m};
    memcpy(t->cache_keys + t->cache_keys_used, w, n);
    memcpy(t->cache_ids + t->cache_ids_used, t->sym, m * sizeof *t->sym);
    t->cache_keys_used += n;
    t->cache_ids_used += m;
    t->cache_count++;
    return 0;
}

// Pre-tokenizes s[0, n) (valid UTF-8) and encodes the pre-tokens. Unless final, the last two
// pre-tokens are held back (*consumed = where they start): a match is decided by the text
// from its start to one character past its end, or to three characters past its start for
// the contractions tried first; two whole pre-tokens after it cover both, so every encoded
// pre-token is the one the whole input gives.
static int pretokenize(pf_tokenizer *t, const char *s, size_t n, bool final, pf_ids *out,
                       size_t *consumed) {
    size_t held[2][2], nheld = 0;  // held-back pre-tokens: [start, end)
    for (size_t pos = 0; pos < n;) {
        int rc = pcre2_match(t->re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, t->md, t->mctx);
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            pf_error("pre-tokenizer failed at byte offset %zu: %s", pos, (const char *)msg);
            *consumed = pos;
            return -1;
        }
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(t->md);
        // Every character is \s, \p{L}, \p{N} or none of them: a match starts at pos.
        PF_ASSERT(ov[0] == pos && ov[1] > pos);
        size_t end = ov[1];
        if (final) {
            if (encode_word(t, s + pos, end - pos, out)) {
                *consumed = pos;
                return -1;
            }
        } else {
            if (nheld == 2) {
                if (encode_word(t, s + held[0][0], held[0][1] - held[0][0], out)) {
                    *consumed = held[0][0];
                    return -1;
                }
                memcpy(held[0], held[1], sizeof held[0]);
                nheld = 1;
            }
            held[nheld][0] = pos;
            held[nheld++][1] = end;
        }
        pos = end;
    }
    *consumed = final || nheld == 0 ? n : held[0][0];
    return 0;
}

int pf_tokenizer_encode_stream(pf_tokenizer *t, const char *text, size_t len, bool final,
                               pf_ids *out, size_t *consumed) {
    bool truncated;
    size_t valid = pf_utf8_prefix(text, len, &truncated);
    if (valid < len && (final || !truncated)) {
        pf_error("invalid UTF-8 at byte offset %zu (byte 0x%02x)", valid,
                 (unsigned char)text[valid]);
        *consumed = valid;
        return -1;
    }
    return pretokenize(t, text, valid, final, out, consumed);
}

int pf_tokenizer_encode(pf_tokenizer *t, const char *text, size_t len, pf_ids *out) {
    size_t consumed;
    return pf_tokenizer_encode_stream(t, text, len, true, out, &consumed);
}

// ---- decoding --------------------------------------------------------------------------

const char *pf_tokenizer_token(const pf_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->vocab_size) return NULL;
    *len = t->off[id + 1] - t->off[id];
    return t->bytes + t->off[id];
}

char *pf_tokenizer_decode(const pf_tokenizer *t, const int32_t *ids, size_t n, size_t *len) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->vocab_size) {
            pf_error("token id %d at position %zu is outside the vocabulary [0, %d)", ids[i], i,
                     t->vocab_size);
            return NULL;
        }
        total += t->off[ids[i] + 1] - t->off[ids[i]];
    }
    char *s = pf_malloc(total + 1), *p = s;
    for (size_t i = 0; i < n; i++) {
        size_t k = t->off[ids[i] + 1] - t->off[ids[i]];
        memcpy(p, t->bytes + t->off[ids[i]], k);
        p += k;
    }
    *p = 0;
    if (len) *len = total;
    return s;
}

size_t pf_utf8_prefix(const char *str, size_t len, bool *truncated) {
    const unsigned char *s = (const unsigned char *)str;
    if (truncated) *truncated = false;
    for (size_t i = 0; i < len;) {
        uint64_t w;
        if (i + 8 <= len && (memcpy(&w, s + i, 8), !(w & 0x8080808080808080ull))) {
            i += 8;  // eight ASCII bytes
            continue;
        }
        unsigned c = s[i], lo = 0x80, hi = 0xBF;
        size_t need;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;  // E0: no overlong forms; ED: no surrogates
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;  // F0: no overlong forms; F4: nothing past U+10FFFF
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else {
            return i;
        }
        for (size_t k = 1; k <= need; k++) {
            if (i + k == len) {
                if (truncated) *truncated = true;
                return i;
            }
            unsigned b = s[i + k];
            if (b < (k == 1 ? lo : 0x80u) || b > (k == 1 ? hi : 0xBFu)) return i;
        }
        i += need + 1;
    }
    return len;
}
