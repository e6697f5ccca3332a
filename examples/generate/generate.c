/*
 * generate.c: greedy decoding with a GPT-2 exported with its key/value cache and compiled by
 * tcc, through the model library's public C API only.
 *
 *   ./generate [-n N] TOKEN...      e.g.  ./generate -n 4 90 61 66 86 56 75 80
 *
 * It links the model library at link time (-L DIR -lPREFIX), includes the header tcc wrote
 * beside it, and:
 *   1. finds the model's inputs and outputs by name with the interface queries: input_ids,
 *      attention_mask, position_ids and past_key_values.{i}.key/.value; logits and
 *      present.{i}.key/.value. The number of layers is the number of past_key_values.{i}.key
 *      inputs; the heads and the head size are the fixed axes 1 and 3 of the past inputs
 *      ([batch, heads, past_seq, head_size]). So it serves the TorchScript and the dynamo
 *      exports alike (Optimum's "text-generation-with-past" interface), and other GPT-2 sizes
 *      exported the same way;
 *   2. runs the prefill: the whole prompt on an empty cache (past dims [1, heads, 0, head_size];
 *      an empty tensor may have NULL data), then N - 1 decoding steps of one token each, the
 *      token the previous run chose, on the cache the previous run returned; the mask is all
 *      ones over past + new tokens, the position ids are past .. past + seq - 1;
 *   3. chooses each token greedily: the argmax of the last logits row (ties to the lowest id);
 *   4. prints the N generated token ids on one line, then the time of the prefill and the mean
 *      time of a decoding step (clock_gettime(CLOCK_MONOTONIC) around each run and its argmax).
 * Every status is checked; on failure it prints the API's message and exits with 1 (2 for a
 * wrong command line). Everything is freed.
 *
 * The model's prefix is the macro MODEL_PREFIX (default `gpt2`), so the function names are
 * gpt2_run and so on; the header is MODEL_HEADER (default "libgpt2.h"). See the Makefile.
 */
#define _POSIX_C_SOURCE 199309L /* clock_gettime */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef MODEL_PREFIX
#define MODEL_PREFIX gpt2
#endif
#ifndef MODEL_HEADER
#define MODEL_HEADER "libgpt2.h"
#endif
#include MODEL_HEADER

/* API(run) is MODEL_PREFIX_run, and so on. */
#define API_CAT2(prefix, name) prefix##_##name
#define API_CAT(prefix, name) API_CAT2(prefix, name)
#define API(name) API_CAT(MODEL_PREFIX, name)

enum { DEFAULT_NEW_TOKENS = 8, MAX_NEW_TOKENS = 1000000, NAME_LEN = 64 };

/* Exits with the API's message if status is not TCC_OK. */
static void check(int32_t status, const tcc_session *session, const char *what) {
  if (status == TCC_OK) return;
  fprintf(stderr, "error: %s: %s: %s\n", what, API(status_string)(status),
          API(last_error)(session));
  exit(1);
}

static void fail(const char *message, const char *name) {
  fprintf(stderr, "error: %s%s%s%s\n", message, name ? " `" : "", name ? name : "",
          name ? "`" : "");
  exit(1);
}

static void *checked_malloc(size_t bytes) {
  void *p = malloc(bytes ? bytes : 1);
  if (!p) {
    fprintf(stderr, "error: out of memory (%zu bytes)\n", bytes);
    exit(1);
  }
  return p;
}

static void usage(const char *program) {
  fprintf(stderr,
          "usage: %s [-n N] TOKEN...\n"
          "  generates N tokens (default %d) greedily after the prompt TOKEN... (token ids)\n",
          program, DEFAULT_NEW_TOKENS);
  exit(2);
}

/* A decimal integer >= min, or -1. */
static int64_t parse_count(const char *s, int64_t min) {
  if (*s < '0' || *s > '9') return -1;
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (*end || errno || v < min) return -1;
  return (int64_t)v;
}

/* The index of the input or output called name, or -1. */
static int32_t find_input(const char *name) {
  for (int32_t i = 0; i < API(num_inputs)(); i++)
    if (strcmp(API(input_name)(i), name) == 0) return i;
  return -1;
}

static int32_t find_output(const char *name) {
  for (int32_t o = 0; o < API(num_outputs)(); o++)
    if (strcmp(API(output_name)(o), name) == 0) return o;
  return -1;
}

/* The input called name, which must be of that dtype and rank. */
static int32_t require_input(const char *name, int32_t dtype, int32_t rank) {
  int32_t i = find_input(name);
  if (i < 0) fail("the model has no input", name);
  if (API(input_dtype)(i) != dtype || API(input_rank)(i) != rank)
    fail("unexpected dtype or rank (want i64 [batch, seq] ids and masks, f32 [batch, heads, "
         "past_seq, head_size] caches) for input", name);
  return i;
}

static int32_t require_output(const char *name, int32_t dtype) {
  int32_t o = find_output(name);
  if (o < 0) fail("the model has no output", name);
  if (API(output_dtype)(o) != dtype) fail("unexpected dtype (want f32) for output", name);
  return o;
}

static double now_ms(void) {
  struct timespec t;
  if (clock_gettime(CLOCK_MONOTONIC, &t) != 0) {
    perror("clock_gettime");
    exit(1);
  }
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* The index of the largest of n floats, the lowest index among equals. */
static int64_t argmax(const float *row, int64_t n) {
  int64_t best = 0;
  for (int64_t k = 1; k < n; k++)
    if (row[k] > row[best]) best = k;
  return best;
}

int main(int argc, char **argv) {
  /* The command line: [-n N] TOKEN... */
  int64_t n_new = DEFAULT_NEW_TOKENS;
  int64_t *prompt = checked_malloc((size_t)argc * sizeof *prompt);
  int64_t prompt_len = 0;
  for (int a = 1; a < argc; a++) {
    if (strcmp(argv[a], "-n") == 0) {
      if (a + 1 >= argc || (n_new = parse_count(argv[++a], 1)) < 0 || n_new > MAX_NEW_TOKENS) {
        fprintf(stderr, "error: -n takes a number of new tokens from 1 to %d\n", MAX_NEW_TOKENS);
        usage(argv[0]);
      }
    } else if ((prompt[prompt_len] = parse_count(argv[a], 0)) >= 0) {
      prompt_len++;
    } else {
      fprintf(stderr, "error: `%s` is not a token id (a decimal integer >= 0)\n", argv[a]);
      usage(argv[0]);
    }
  }
  if (prompt_len == 0) usage(argv[0]);

  /* The interface. The inputs past_key_values.{i}.key/.value for i = 0, 1, ... give the
   * layers; together with the three token inputs they must be all the inputs, and each has a
   * present.{i}.key/.value output. */
  const int32_t n_inputs = API(num_inputs)(), n_outputs = API(num_outputs)();
  const int32_t ids_in = require_input("input_ids", TCC_I64, 2);
  const int32_t mask_in = require_input("attention_mask", TCC_I64, 2);
  const int32_t pos_in = require_input("position_ids", TCC_I64, 2);
  const int32_t logits_out = require_output("logits", TCC_F32);
  int32_t layers = 0;
  char name[NAME_LEN];
  for (;;) {
    snprintf(name, sizeof name, "past_key_values.%d.key", layers);
    if (find_input(name) < 0) break;
    layers++;
  }
  if (layers == 0) fail("the model has no input", "past_key_values.0.key");
  if (n_inputs != 3 + 2 * layers || n_outputs != 1 + 2 * layers) {
    fprintf(stderr, "error: the model has %d inputs and %d outputs; a GPT-2 with %d layers "
            "exported with its cache has %d and %d\n", n_inputs, n_outputs, layers,
            3 + 2 * layers, 1 + 2 * layers);
    return 1;
  }
  /* Cache tensor c = 2 * layer + (0 for the key, 1 for the value). */
  const int32_t n_cache = 2 * layers;
  int32_t *past_in = checked_malloc((size_t)n_cache * sizeof *past_in);
  int32_t *present_out = checked_malloc((size_t)n_cache * sizeof *present_out);
  int64_t heads = 0, head_size = 0;
  for (int32_t c = 0; c < n_cache; c++) {
    const char *kv = c % 2 ? "value" : "key";
    snprintf(name, sizeof name, "past_key_values.%d.%s", c / 2, kv);
    past_in[c] = require_input(name, TCC_F32, 4);
    int64_t h = API(input_dim)(past_in[c], 1), d = API(input_dim)(past_in[c], 3);
    if (h <= 0 || d <= 0 || API(input_dim)(past_in[c], 2) >= 0)
      fail("want [batch, heads, past_seq, head_size] with fixed heads and head size and a "
           "symbolic past_seq for input", name);
    if (c == 0) {
      heads = h;
      head_size = d;
    } else if (h != heads || d != head_size) {
      fail("heads or head size differ from past_key_values.0.key's in input", name);
    }
    snprintf(name, sizeof name, "present.%d.%s", c / 2, kv);
    present_out[c] = require_output(name, TCC_F32);
  }

  /* The buffers. The longest sequence the model sees is the prompt and N - 1 generated
   * tokens (the last one is chosen but not fed back).
   *
   * The cache: the presents go to the caller's own buffers, two per cache tensor used in turn
   * (ping-pong): a run reads past_key_values.* from one and writes present.* into the other,
   * which the next run reads as its past. A run's outputs may not overlap its inputs, so one
   * buffer each would not do; with two, nothing is copied between steps, and the buffers are
   * allocated once, sized for the longest sequence: a [1, heads, total, head_size] present is
   * dense, so its first heads * total * head_size floats are the next past as it is. (The
   * other way, session-owned presents, valid until the next run, would need a copy of each
   * into buffers of our own before that run.) The logits are session-owned: the argmax reads
   * them before the next run. */
  const int64_t max_total = prompt_len + n_new - 1;
  const size_t cache_bytes = (size_t)(heads * max_total * head_size) * sizeof(float);
  float **cache[2];
  for (int side = 0; side < 2; side++) {
    cache[side] = checked_malloc((size_t)n_cache * sizeof *cache[side]);
    for (int32_t c = 0; c < n_cache; c++) cache[side][c] = checked_malloc(cache_bytes);
  }
  int64_t *mask = checked_malloc((size_t)max_total * sizeof *mask);
  int64_t *positions = checked_malloc((size_t)prompt_len * sizeof *positions);
  for (int64_t k = 0; k < max_total; k++) mask[k] = 1;
  int64_t *generated = checked_malloc((size_t)n_new * sizeof *generated);

  tcc_tensor *inputs = checked_malloc((size_t)n_inputs * sizeof *inputs);
  tcc_output *outputs = checked_malloc((size_t)n_outputs * sizeof *outputs);
  int64_t ids_dims[2], mask_dims[2], past_dims[4] = {1, heads, 0, head_size};
  inputs[ids_in] = (tcc_tensor){TCC_I64, 2, ids_dims, NULL};
  inputs[mask_in] = (tcc_tensor){TCC_I64, 2, mask_dims, mask};
  inputs[pos_in] = (tcc_tensor){TCC_I64, 2, ids_dims, positions};
  for (int32_t c = 0; c < n_cache; c++)
    inputs[past_in[c]] = (tcc_tensor){TCC_F32, 4, past_dims, NULL};

  tcc_session *session = NULL;
  check(API(session_create)(0, &session), NULL, "session_create");

  /* Step 0 is the prefill (the prompt, past 0, the cache inputs empty with NULL data), step s
   * feeds generated[s - 1] on the past the previous step returned in cache[(s + 1) % 2]. */
  double prefill_ms = 0, decode_ms = 0;
  int64_t past = 0;
  for (int64_t step = 0; step < n_new; step++) {
    const int64_t seq = step == 0 ? prompt_len : 1;
    float **past_side = cache[(step + 1) % 2], **present_side = cache[step % 2];
    ids_dims[0] = 1;
    ids_dims[1] = seq;
    inputs[ids_in].data = step == 0 ? prompt : &generated[step - 1];
    mask_dims[0] = 1;
    mask_dims[1] = past + seq;
    for (int64_t k = 0; k < seq; k++) positions[k] = past + k;
    past_dims[2] = past;
    memset(outputs, 0, (size_t)n_outputs * sizeof *outputs);
    for (int32_t c = 0; c < n_cache; c++) {
      inputs[past_in[c]].data = past ? past_side[c] : NULL;
      outputs[present_out[c]].buffer = present_side[c];
      outputs[present_out[c]].capacity = cache_bytes;
    }

    char what[NAME_LEN];
    if (step == 0)
      snprintf(what, sizeof what, "prefill (%" PRId64 " token%s)", seq,
               seq == 1 ? "" : "s");
    else
      snprintf(what, sizeof what, "decoding step %" PRId64 " (past %" PRId64 ")", step, past);
    const double start = now_ms();
    check(API(run)(session, inputs, n_inputs, outputs, n_outputs), session, what);
    const tcc_output *logits = &outputs[logits_out];
    if (logits->rank != 3 || logits->dims[0] != 1 || logits->dims[1] != seq ||
        logits->dims[2] < 1)
      fail("want [1, seq, vocabulary] for output", "logits");
    const int64_t vocab = logits->dims[2];
    generated[step] = argmax((const float *)logits->data + (seq - 1) * vocab, vocab);
    const double ms = now_ms() - start;
    if (step == 0) prefill_ms = ms;
    else decode_ms += ms;

    past += seq;
    for (int32_t c = 0; c < n_cache; c++) {
      const tcc_output *p = &outputs[present_out[c]];
      if (p->rank != 4 || p->dims[0] != 1 || p->dims[1] != heads || p->dims[2] != past ||
          p->dims[3] != head_size)
        fail("want [1, heads, past + seq, head_size] for output",
             API(output_name)(present_out[c]));
    }
  }

  printf("generated:");
  for (int64_t k = 0; k < n_new; k++) printf(" %" PRId64, generated[k]);
  printf("\n");
  printf("time: prefill %.3f ms (%" PRId64 " token%s), ", prefill_ms, prompt_len,
         prompt_len == 1 ? "" : "s");
  if (n_new > 1)
    printf("decode %.3f ms/step (mean of %" PRId64 " step%s)", decode_ms / (double)(n_new - 1),
           n_new - 1, n_new == 2 ? "" : "s");
  else
    printf("no decoding step");
  printf(", %d threads\n", API(session_num_threads)(session));

  API(session_free)(session);
  for (int side = 0; side < 2; side++) {
    for (int32_t c = 0; c < n_cache; c++) free(cache[side][c]);
    free(cache[side]);
  }
  free(outputs);
  free(inputs);
  free(generated);
  free(positions);
  free(mask);
  free(present_out);
  free(past_in);
  free(prompt);
  return 0;
}
