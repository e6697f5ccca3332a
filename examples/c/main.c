/*
 * main.c: a C program that uses a tcc-compiled model through its public API only.
 *
 * It links the model library at link time (-L DIR -lPREFIX), includes the header tcc wrote
 * beside it, and:
 *   1. lists the model's inputs and outputs with the interface queries;
 *   2. creates a session (default threads: TCC_NUM_THREADS, else the physical cores);
 *   3. fills every input, found by name, from a small batch of token ids (BATCH sequences of
 *      SEQ tokens, the second one padded; see fill_input);
 *   4. runs the model into session-owned outputs and prints each output's shape and checksums;
 *   5. runs it again into its own buffers, sized from the first run, and checks that both runs
 *      agree bit for bit;
 *   6. writes the outputs' raw bytes to OUT if given (`./main OUT`), then frees everything.
 * Every status is checked; on failure it prints the API's message and exits with 1.
 *
 * The model's prefix is the macro MODEL_PREFIX (default `model`), so the function names are
 * model_run and so on; the header is MODEL_HEADER (default "libmodel.h", which tcc writes beside libmodel.so). See the Makefile.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef MODEL_PREFIX
#define MODEL_PREFIX model
#endif
#ifndef MODEL_HEADER
#define MODEL_HEADER "libmodel.h"
#endif
#include MODEL_HEADER

/* API(run) is MODEL_PREFIX_run, and so on. */
#define API_CAT2(prefix, name) prefix##_##name
#define API_CAT(prefix, name) API_CAT2(prefix, name)
#define API(name) API_CAT(MODEL_PREFIX, name)

/* The batch: BATCH sequences of SEQ tokens. Sequence b holds SEQ - 3 b real tokens (at least
 * one), the rest is padding: token id 0, attention mask 0. Token s of sequence b is
 * 1 + (7 s + 13 b) % 97. */
enum { BATCH = 2, SEQ = 8 };

static int64_t sequence_length(int64_t b) {
  int64_t n = SEQ - 3 * b;
  return n < 1 ? 1 : n;
}

static int64_t token_id(int64_t b, int64_t s) {
  return s < sequence_length(b) ? 1 + (7 * s + 13 * b) % 97 : 0;
}

static const char *dtype_name(int32_t dtype) {
  static const char *names[] = {"?", "f32", "f64", "f16", "bf16", "i64", "i32", "i8", "u8",
                                "bool"};
  return dtype >= 1 && dtype <= 9 ? names[dtype] : "?";
}

static size_t dtype_size(int32_t dtype) {
  switch (dtype) {
    case TCC_F64: case TCC_I64: return 8;
    case TCC_F32: case TCC_I32: return 4;
    case TCC_F16: case TCC_BF16: return 2;
    default: return 1;
  }
}

/* Exits with the API's message if status is not TCC_OK. */
static void check(int32_t status, const tcc_session *session, const char *what) {
  if (status == TCC_OK) return;
  fprintf(stderr, "error: %s: %s: %s\n", what, API(status_string)(status),
          API(last_error)(session));
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

/* Fills input i: an i64 [batch, seq] tensor of token ids, attention mask or token types
 * (chosen by its name). Sets *dims and returns the data, both malloc'ed. */
static int64_t *fill_input(int32_t i, int64_t **dims_out) {
  const char *name = API(input_name)(i);
  int32_t rank = API(input_rank)(i);
  if (API(input_dtype)(i) != TCC_I64 || rank != 2) {
    fprintf(stderr, "error: input `%s` is %s with rank %d; this example feeds only i64 "
            "[batch, seq] inputs (token ids, attention mask, token types)\n",
            name, dtype_name(API(input_dtype)(i)), rank);
    exit(1);
  }
  int64_t *dims = checked_malloc(2 * sizeof *dims);
  dims[0] = API(input_dim)(i, 0) < 0 ? BATCH : API(input_dim)(i, 0);
  dims[1] = API(input_dim)(i, 1) < 0 ? SEQ : API(input_dim)(i, 1);
  int64_t *data = checked_malloc((size_t)(dims[0] * dims[1]) * sizeof *data);
  for (int64_t b = 0; b < dims[0]; b++)
    for (int64_t s = 0; s < dims[1]; s++) {
      int64_t v;
      if (strstr(name, "mask")) v = s < sequence_length(b);
      else if (strstr(name, "type")) v = 0;
      else v = token_id(b, s);
      data[b * dims[1] + s] = v;
    }
  *dims_out = dims;
  return data;
}

/* The sum and the sum of magnitudes of an output's elements, in double, in order. */
static void checksums(const tcc_output *out, double *sum, double *abs_sum) {
  size_t n = (size_t)(out->size / dtype_size(out->dtype));
  *sum = 0;
  *abs_sum = 0;
  for (size_t k = 0; k < n; k++) {
    double v;
    switch (out->dtype) {
      case TCC_F32: v = ((const float *)out->data)[k]; break;
      case TCC_F64: v = ((const double *)out->data)[k]; break;
      case TCC_I64: v = (double)((const int64_t *)out->data)[k]; break;
      case TCC_I32: v = ((const int32_t *)out->data)[k]; break;
      default: v = ((const uint8_t *)out->data)[k]; break;
    }
    *sum += v;
    *abs_sum += v < 0 ? -v : v;
  }
}

int main(int argc, char **argv) {
  if (argc > 2) {
    fprintf(stderr, "usage: %s [OUT]\n", argv[0]);
    return 2;
  }
  int32_t n_inputs = API(num_inputs)(), n_outputs = API(num_outputs)();
  printf("model: %d inputs, %d outputs\n", n_inputs, n_outputs);
  for (int32_t i = 0; i < n_inputs; i++) {
    printf("input %d: %s %s [", i, API(input_name)(i), dtype_name(API(input_dtype)(i)));
    for (int32_t axis = 0; axis < API(input_rank)(i); axis++) {
      const char *symbol = API(input_dim_symbol)(i, axis);
      if (axis) printf(", ");
      if (symbol) printf("%s", symbol);
      else printf("%" PRId64, API(input_dim)(i, axis));
    }
    printf("]\n");
  }

  tcc_session *session = NULL;
  check(API(session_create)(0, &session), NULL, "session_create");
  printf("session: %d threads\n", API(session_num_threads)(session));

  tcc_tensor *inputs = checked_malloc((size_t)n_inputs * sizeof *inputs);
  int64_t **input_dims = checked_malloc((size_t)n_inputs * sizeof *input_dims);
  int64_t **input_data = checked_malloc((size_t)n_inputs * sizeof *input_data);
  for (int32_t i = 0; i < n_inputs; i++) {
    input_data[i] = fill_input(i, &input_dims[i]);
    inputs[i].dtype = TCC_I64;
    inputs[i].rank = 2;
    inputs[i].dims = input_dims[i];
    inputs[i].data = input_data[i];
  }

  /* Run 1: session-owned outputs (buffer NULL), valid until the next run. */
  tcc_output *owned = checked_malloc((size_t)n_outputs * sizeof *owned);
  memset(owned, 0, (size_t)n_outputs * sizeof *owned);
  check(API(run)(session, inputs, n_inputs, owned, n_outputs), session, "run");

  /* Run 2: into our own buffers, sized from run 1. Copy run 1's results first: run 2 may
   * reuse the session's buffers. */
  tcc_output *mine = checked_malloc((size_t)n_outputs * sizeof *mine);
  void **first = checked_malloc((size_t)n_outputs * sizeof *first);
  memset(mine, 0, (size_t)n_outputs * sizeof *mine);
  for (int32_t o = 0; o < n_outputs; o++) {
    first[o] = checked_malloc(owned[o].size);
    memcpy(first[o], owned[o].data, owned[o].size);
    mine[o].buffer = checked_malloc(owned[o].size);
    mine[o].capacity = owned[o].size;
  }
  check(API(run)(session, inputs, n_inputs, mine, n_outputs), session, "run into own buffers");

  FILE *dump = NULL;
  if (argc == 2 && !(dump = fopen(argv[1], "wb"))) {
    perror(argv[1]);
    return 1;
  }
  int mismatches = 0;
  for (int32_t o = 0; o < n_outputs; o++) {
    const tcc_output *out = &mine[o];
    if (out->data != out->buffer || out->size != owned[o].size ||
        memcmp(out->data, first[o], out->size) != 0) {
      fprintf(stderr, "error: output `%s` differs between the two runs\n", API(output_name)(o));
      mismatches++;
    }
    double sum, abs_sum;
    checksums(out, &sum, &abs_sum);
    printf("output %d: %s %s [", o, API(output_name)(o), dtype_name(out->dtype));
    for (int32_t axis = 0; axis < out->rank; axis++)
      printf("%s%" PRId64, axis ? ", " : "", out->dims[axis]);
    printf("] sum=%.6f abs_sum=%.6f\n", sum, abs_sum);
    if (dump && fwrite(out->data, 1, out->size, dump) != out->size) {
      perror(argv[1]);
      return 1;
    }
  }
  if (dump && fclose(dump) != 0) {
    perror(argv[1]);
    return 1;
  }

  API(session_free)(session);
  for (int32_t o = 0; o < n_outputs; o++) {
    free(first[o]);
    free(mine[o].buffer);
  }
  for (int32_t i = 0; i < n_inputs; i++) {
    free(input_data[i]);
    free(input_dims[i]);
  }
  free(first);
  free(mine);
  free(owned);
  free(input_data);
  free(input_dims);
  free(inputs);
  if (mismatches) return 1;
  printf("ok\n");
  return 0;
}
