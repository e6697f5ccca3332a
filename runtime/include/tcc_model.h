/*
 * tcc_model.h: the ABI between a tcc-compiled model and the tcc runtime, and the public C API
 * every model library exports.
 *
 * This file is the source of truth. runtime/src/abi.rs mirrors its structs as #[repr(C)] Rust
 * types, crates/codegen/src/abi.rs emits matching LLVM constants, and the header tcc writes
 * beside each model.so copies the PUBLIC TYPES block below verbatim.
 *
 * A model library `PREFIX.so` holds the generated code, one constant model descriptor
 * (tcc_model_desc) and a private copy of the runtime. It exports exactly the functions
 * `PREFIX_xxx` listed under "The public API"; each is a thin wrapper that calls the runtime's
 * `tcc_rt_xxx` with the model's descriptor as first argument. Everything else in the library,
 * the runtime included, is local, so several models (with different prefixes) link into one
 * program without clashing.
 *
 * ---------------------------------------------------------------------------------------------
 * The public API (declared per model, with its prefix, by the generated header)
 * ---------------------------------------------------------------------------------------------
 *
 *   int32_t PREFIX_session_create(int32_t num_threads, tcc_session **session);
 *       Creates a session: a thread pool, an activation arena and session-owned output
 *       buffers. num_threads > 0 asks for that many threads (the caller's thread included);
 *       num_threads <= 0 means the default: the TCC_NUM_THREADS environment variable if set
 *       (it must then be a positive integer), else the number of physical cores (from
 *       /sys/devices/system/cpu, capped by the CPUs this process may use). Threads are capped at
 *       TCC_MAX_THREADS. On success stores the session in *session and returns TCC_OK; on
 *       failure stores NULL (if session is not NULL) and returns an error code, with the
 *       message in PREFIX_last_error(NULL).
 *
 *   void PREFIX_session_free(tcc_session *session);
 *       Stops the session's threads and frees everything it owns, session-owned outputs
 *       included. NULL is a no-op. A session of another model is left alone (an error
 *       message is set for PREFIX_last_error(NULL)).
 *
 *   int32_t PREFIX_session_num_threads(const tcc_session *session);
 *       The number of threads the session runs on (>= 1), or -1 for an invalid session.
 *
 *   int32_t PREFIX_num_inputs(void);           int32_t PREFIX_num_outputs(void);
 *   const char *PREFIX_input_name(int32_t i);  const char *PREFIX_output_name(int32_t i);
 *   int32_t PREFIX_input_dtype(int32_t i);     int32_t PREFIX_output_dtype(int32_t i);
 *   int32_t PREFIX_input_rank(int32_t i);      int32_t PREFIX_output_rank(int32_t i);
 *       The model's interface. Names are NUL-terminated and live as long as the library is
 *       loaded. An index out of range gives NULL (names), 0 (dtypes) or -1 (ranks).
 *
 *   int64_t PREFIX_input_dim(int32_t i, int32_t axis);
 *       The fixed size of that axis of input i, -1 if it is symbolic (given per run), or -2
 *       if i or axis is out of range.
 *
 *   const char *PREFIX_input_dim_symbol(int32_t i, int32_t axis);
 *       The name of the symbol that axis stands for (such as "batch"), or NULL if the axis is
 *       fixed or out of range. Axes that share a symbol must have equal sizes in a run. A
 *       symbol may be 0 (an empty tensor, such as a KV cache before the prompt) where the
 *       model's ops allow it; where they do not, the run fails with TCC_ERR_SHAPE and a
 *       message naming the op that needs it.
 *
 *   int64_t PREFIX_output_dim(int32_t i, int32_t axis);
 *   const char *PREFIX_output_dim_symbol(int32_t i, int32_t axis);
 *       The same for output i: its fixed size, or -1 where it depends on the inputs' sizes,
 *       with the symbol's name where it is one symbol (NULL where it is computed from several,
 *       such as past + seq: a run fills in its value); -2 and NULL out of range.
 *
 *   int32_t PREFIX_run(tcc_session *session, const tcc_tensor *inputs, int32_t n_inputs,
 *                      tcc_output *outputs, int32_t n_outputs);
 *       Runs the model once. inputs[i] is input i, in the order of PREFIX_input_name;
 *       n_inputs and n_outputs must equal PREFIX_num_inputs() and PREFIX_num_outputs().
 *       Every input is validated before anything runs: its dtype, its rank, each dim against
 *       the fixed size or the symbol it binds (a symbol's first use binds it; later uses must
 *       agree), data not NULL unless the tensor is empty, data aligned to its element size.
 *       For each output, the caller either gives a buffer (buffer != NULL, capacity its size in
 *       bytes, aligned to the element size, not overlapping any input or other output) or
 *       asks for a session-owned one (buffer == NULL). On success every output's data, size,
 *       dtype, rank and dims are filled in; data points to the caller's buffer or to a
 *       session-owned buffer that stays valid until the next PREFIX_run or
 *       PREFIX_session_free on this session. On failure no result is valid: every output's data
 *       is NULL and the error code says why (a failure found during the run, such as a
 *       token id out of range, may come after some kernels ran: a caller-owned buffer may
 *       then hold partial values); TCC_ERR_CAPACITY still fills in the size,
 *       dtype, rank and dims of every output, so the caller can grow its buffers and retry.
 *
 *   const char *PREFIX_last_error(const tcc_session *session);
 *       The message of the most recent failed call on this session (empty if none has
 *       failed; successful calls do not clear it). With NULL: the message of the most recent
 *       failure on the calling thread that had no valid session to record it (session_create,
 *       a NULL or foreign session, an index out of range). Never NULL; valid until the next
 *       failing call that records a message in the same place.
 *
 *   const char *PREFIX_status_string(int32_t status);
 *       A short constant description of a status code ("ok", "invalid argument", ...).
 *
 * Thread safety. A session may be used by one thread at a time: calls on one session must not
 * overlap (serialise them yourself if threads share it). Different sessions, of the same model
 * or of different models, may run at the same time on different threads. The interface
 * queries (num_inputs ... output_dim_symbol, status_string) may be called from any thread at
 * any time. A session may be freed by any thread once no call on it is in progress.
 * Sessions hold no state between runs besides buffers, so results do not depend on which
 * session computes them.
 *
 * Ownership. Inputs and caller-owned output buffers belong to the caller; the runtime reads
 * and writes them only during PREFIX_run. Session-owned output buffers belong to the session.
 */
#ifndef TCC_MODEL_H
#define TCC_MODEL_H

/* BEGIN TCC PUBLIC TYPES */
#ifndef TCC_PUBLIC_TYPES_DEFINED
#define TCC_PUBLIC_TYPES_DEFINED
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The largest rank of an output (tcc_output.dims has this many entries). */
#define TCC_MAX_RANK 8
/* The most threads a session runs on. */
#define TCC_MAX_THREADS 1024

/* Status codes returned by the API. */
typedef enum tcc_status {
  TCC_OK = 0,
  TCC_ERR_INVALID_ARGUMENT = 1, /* a NULL, foreign or misaligned pointer, or a wrong count */
  TCC_ERR_DTYPE = 2,            /* an input's dtype is not the model's */
  TCC_ERR_SHAPE = 3,            /* an input's rank or dims do not fit the model or each other */
  TCC_ERR_OUT_OF_MEMORY = 4,    /* a buffer or a thread could not be allocated */
  TCC_ERR_INTERNAL = 5,         /* a bug in tcc or a corrupt model library */
  TCC_ERR_CAPACITY = 6          /* a caller's output buffer is smaller than the output */
} tcc_status;

/* Element types. */
typedef enum tcc_dtype {
  TCC_F32 = 1, TCC_F64, TCC_F16, TCC_BF16, TCC_I64, TCC_I32, TCC_I8, TCC_U8, TCC_BOOL
} tcc_dtype;

/* A session: thread pool, activation arena, session-owned outputs. Opaque. */
typedef struct tcc_session tcc_session;

/* An input tensor, described by the caller. Dense, row-major (C order). */
typedef struct tcc_tensor {
  int32_t dtype;        /* a tcc_dtype */
  int32_t rank;         /* number of axes, >= 0 */
  const int64_t *dims;  /* rank sizes (may be NULL when rank is 0) */
  const void *data;     /* the elements (may be NULL when the tensor is empty) */
} tcc_tensor;

/* An output tensor: where to put it (set by the caller), and what it is (set by run). */
typedef struct tcc_output {
  void *buffer;                 /* in: the caller's buffer, or NULL for a session-owned one */
  uint64_t capacity;            /* in: bytes available at buffer (ignored if buffer is NULL) */
  void *data;                   /* out: the result: buffer, or session-owned; NULL on failure */
  uint64_t size;                /* out: the result's size in bytes */
  int32_t dtype;                /* out: a tcc_dtype */
  int32_t rank;                 /* out: number of axes */
  int64_t dims[TCC_MAX_RANK];   /* out: the first rank entries are the sizes */
} tcc_output;

#ifdef __cplusplus
}
#endif
#endif /* TCC_PUBLIC_TYPES_DEFINED */
/* END TCC PUBLIC TYPES */

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
 * The descriptor ABI: what generated code gives the runtime. Not for model users.
 * ------------------------------------------------------------------------------------------- */

#define TCC_ABI_VERSION 2

/* An output dim that is an expression of the symbols (only output_dims() knows its value). */
#define TCC_DIM_COMPUTED INT64_MIN

/* The session's thread pool. Opaque to generated code. */
typedef struct tcc_rt_pool tcc_rt_pool;

/* Runs fn(ctx, i) once for every i in [0, n) on the session's threads, the calling thread
 * taking part, and returns when all calls have returned. Indices are handed out in contiguous
 * chunks in increasing order; calls may run concurrently and in any order across threads, so
 * fn must be safe to call from several threads at once with the same ctx. n <= 0 does nothing.
 * A call from inside fn (nested) runs its loop serially on the calling thread. */
void tcc_rt_parallel_for(tcc_rt_pool *pool, int64_t n, void (*fn)(void *ctx, int64_t i),
                         void *ctx);
/* The number of threads parallel_for uses (>= 1). */
int32_t tcc_rt_num_threads(const tcc_rt_pool *pool);

/* A tensor of the model's interface. */
typedef struct {
  const char *name;     /* NUL-terminated */
  int32_t dtype;        /* a tcc_dtype */
  int32_t rank;         /* <= TCC_MAX_RANK for outputs */
  const int64_t *dims;  /* per axis: >= 0 a fixed size; < 0 symbol number -(d+1); for outputs
                           also TCC_DIM_COMPUTED. Inputs' dims are fixed or plain symbols. */
} tcc_tensor_desc;

/* A model. Every symbol appears in at least one input dim, so inputs bind all of them. */
/* The return codes of a model's run function. */
#define TCC_RUN_OK 0
#define TCC_RUN_INDEX_OUT_OF_RANGE 1
#define TCC_RUN_SIZES_DISAGREE 2

/* How many values a failed size check reports (tcc_model_desc.check_sizes). */
#define TCC_CHECK_VALUES 16

typedef struct {
  uint32_t abi_version;                   /* TCC_ABI_VERSION */
  int32_t n_inputs;
  int32_t n_outputs;
  int32_t n_symbols;
  const tcc_tensor_desc *inputs;          /* n_inputs */
  const tcc_tensor_desc *outputs;         /* n_outputs */
  const char *const *symbol_names;        /* n_symbols */
  /* Writes all outputs' dims, concatenated in output order, for these symbol values. */
  void (*output_dims)(const int64_t *symbols, int64_t *dims);
  /* The activation arena, in bytes, a run with these symbol values needs. */
  uint64_t (*arena_bytes)(const int64_t *symbols);
  /* Computes the outputs. inputs[i] and outputs[i] point to dense buffers of the validated
   * shapes; arena is 64-byte aligned with at least arena_bytes(symbols) bytes. Called only
   * after check_sizes passed. Returns TCC_RUN_OK; TCC_RUN_INDEX_OUT_OF_RANGE (reported as
   * TCC_ERR_INVALID_ARGUMENT) when an index read from an input (a token id, a position) is out
   * of range; TCC_RUN_SIZES_DISAGREE (reported as TCC_ERR_SHAPE) when sizes that the model's
   * operations need to agree do not (generated code checks them all in check_sizes instead);
   * anything else is reported as TCC_ERR_INTERNAL. */
  int32_t (*run)(tcc_rt_pool *pool, const int64_t *symbols, const void *const *inputs,
                 void *const *outputs, uint8_t *arena);
  /* The size checks: relations between sizes that the model's operations need (a reshape's
   * element counts, broadcasting, a matrix product's inner size, a slice within its axis, a
   * tensor small enough to address) and its types leave to run time. n_size_checks messages,
   * each a template naming the node and sizes, where {k} stands for values[k] of check_sizes
   * and {{ and }} for braces. */
  int32_t n_size_checks;
  const char *const *size_checks;
  /* Evaluates the size checks in order for these symbol values, before output_dims,
   * arena_bytes and run (so nothing is sized from values that do not fit): returns -1 if all
   * hold, else the index of the first that fails, with the values its message shows in
   * values[0 .. TCC_CHECK_VALUES). The runtime reports a failure as TCC_ERR_SHAPE. May be NULL
   * when n_size_checks is 0. */
  int32_t (*check_sizes)(const int64_t *symbols, int64_t *values);
} tcc_model_desc;

/* The runtime's generic implementation of the public API: PREFIX_xxx(args...) calls
 * tcc_rt_xxx(&desc, args...). */
int32_t tcc_rt_session_create(const tcc_model_desc *desc, int32_t num_threads,
                              tcc_session **session);
void tcc_rt_session_free(const tcc_model_desc *desc, tcc_session *session);
int32_t tcc_rt_session_num_threads(const tcc_model_desc *desc, const tcc_session *session);
int32_t tcc_rt_num_inputs(const tcc_model_desc *desc);
int32_t tcc_rt_num_outputs(const tcc_model_desc *desc);
const char *tcc_rt_input_name(const tcc_model_desc *desc, int32_t i);
const char *tcc_rt_output_name(const tcc_model_desc *desc, int32_t i);
int32_t tcc_rt_input_dtype(const tcc_model_desc *desc, int32_t i);
int32_t tcc_rt_output_dtype(const tcc_model_desc *desc, int32_t i);
int32_t tcc_rt_input_rank(const tcc_model_desc *desc, int32_t i);
int32_t tcc_rt_output_rank(const tcc_model_desc *desc, int32_t i);
int64_t tcc_rt_input_dim(const tcc_model_desc *desc, int32_t i, int32_t axis);
const char *tcc_rt_input_dim_symbol(const tcc_model_desc *desc, int32_t i, int32_t axis);
int64_t tcc_rt_output_dim(const tcc_model_desc *desc, int32_t i, int32_t axis);
const char *tcc_rt_output_dim_symbol(const tcc_model_desc *desc, int32_t i, int32_t axis);
int32_t tcc_rt_run(const tcc_model_desc *desc, tcc_session *session, const tcc_tensor *inputs,
                   int32_t n_inputs, tcc_output *outputs, int32_t n_outputs);
const char *tcc_rt_last_error(const tcc_model_desc *desc, const tcc_session *session);
const char *tcc_rt_status_string(const tcc_model_desc *desc, int32_t status);

#ifdef __cplusplus
}
#endif
#endif /* TCC_MODEL_H */
