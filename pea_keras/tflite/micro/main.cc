// Self-test of one model's TensorFlow Lite Micro kit, as written by `pea-tflite convert`:
// runs the kit's golden inputs through tflite::MicroInterpreter, compares every output byte with
// the outputs TFLite Micro's reference kernels computed when the kit was made, and prints PASS or
// FAIL, the arena used and the time per inference. Exit code 0 = every output bit-exact.
//
// Compile it with the kit's folder on the include path and the kit's stem as PEA_MODEL, e.g.
// -DPEA_MODEL=digits_tiny_int8 for digits_tiny_int8_model_data.cc and its neighbours; link
// <stem>_model_data.cc, <stem>_test_data.cc and the TFLite Micro library. Optional:
// -DPEA_TIMED_RUNS=N adds N timed inferences of the first sample (default 10).
// Plain C++11 on top of TFLite Micro: no heap, no file system, no OS.

#include <stdint.h>
#include <string.h>

#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "tensorflow/lite/micro/micro_time.h"
#include "tensorflow/lite/micro/system_setup.h"
#include "tensorflow/lite/schema/schema_generated.h"

#ifndef PEA_MODEL
#error "Define PEA_MODEL as the stem of the generated files, e.g. -DPEA_MODEL=digits_tiny_int8"
#endif
#ifndef PEA_TIMED_RUNS
#define PEA_TIMED_RUNS 10
#endif

#define PEA_STR_(x) #x
#define PEA_STR(x) PEA_STR_(x)
#define PEA_CAT_(a, b) a##b
#define PEA_CAT(a, b) PEA_CAT_(a, b)
// PEA_KIT_FILE(_model_data) -> "<stem>_model_data.h"
#define PEA_KIT_FILE(suffix) PEA_STR(PEA_CAT(PEA_MODEL, suffix).h)

#include PEA_KIT_FILE(_model_data)
#include PEA_KIT_FILE(_model_settings)
#include PEA_KIT_FILE(_op_resolver)
#include PEA_KIT_FILE(_test_data)

#define PEA_MODEL_DATA PEA_CAT(PEA_CAT(g_, PEA_MODEL), _model_data)
namespace kit = PEA_CAT(PEA_MODEL, _model);

namespace {

alignas(16) uint8_t tensor_arena[kit::kTensorArenaSize];

int Fail(const char* why) {
  MicroPrintf("FAIL: %s", why);
  return 1;
}

// Elements of `output` that differ from `expected`, and the largest difference.
int CountMismatches(const kit::OutputType* output, const kit::OutputType* expected,
                    double* max_diff) {
  int mismatches = 0;
  for (int i = 0; i < kit::kOutputSize; ++i) {
    if (memcmp(&output[i], &expected[i], sizeof(kit::OutputType)) != 0) {
      const double diff = static_cast<double>(output[i]) - static_cast<double>(expected[i]);
      if ((diff < 0 ? -diff : diff) > *max_diff) *max_diff = diff < 0 ? -diff : diff;
      ++mismatches;
    }
  }
  return mismatches;
}

}  // namespace

int main(int argc, char* argv[]) {
  (void)argc;
  (void)argv;
  tflite::InitializeTarget();
  const tflite::Model* model = tflite::GetModel(PEA_MODEL_DATA);
  if (model->version() != TFLITE_SCHEMA_VERSION) return Fail("model schema version mismatch");

  static kit::OpResolver resolver;
  if (kit::RegisterOps(resolver) != kTfLiteOk) return Fail("cannot register the model's ops");
  static tflite::MicroInterpreter interpreter(model, resolver, tensor_arena,
                                              kit::kTensorArenaSize);
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    return Fail("AllocateTensors failed (arena too small or an op missing)");
  }
  TfLiteTensor* input = interpreter.input(0);
  TfLiteTensor* output = interpreter.output(0);
  if (input->bytes != sizeof(kit::kTestInputs[0]) ||
      output->bytes != sizeof(kit::kTestOutputs[0])) {
    return Fail("input or output tensor size differs from the model settings");
  }

  int failed_samples = 0;
  uint32_t ticks = 0;
  int runs = 0;
  for (int s = 0; s < kit::kNumTestSamples + PEA_TIMED_RUNS; ++s) {
    const int sample = s < kit::kNumTestSamples ? s : 0;
    memcpy(input->data.data, kit::kTestInputs[sample], sizeof(kit::kTestInputs[0]));
    const uint32_t start = tflite::GetCurrentTimeTicks();
    if (interpreter.Invoke() != kTfLiteOk) return Fail("Invoke failed");
    ticks += tflite::GetCurrentTimeTicks() - start;
    ++runs;
    if (s >= kit::kNumTestSamples) continue;
    double max_diff = 0;
    const int bad = CountMismatches(reinterpret_cast<const kit::OutputType*>(output->data.data),
                                    kit::kTestOutputs[s], &max_diff);
    if (bad) {
      ++failed_samples;
      MicroPrintf("sample %d: %d of %d outputs differ, by up to %d", s, bad, kit::kOutputSize,
                  static_cast<int>(max_diff + 0.5));
    } else {
      MicroPrintf("sample %d: %d outputs bit-exact", s, kit::kOutputSize);
    }
  }

  MicroPrintf("model %d bytes, arena %d of %d bytes used", kit::kModelBytes,
              static_cast<int>(interpreter.arena_used_bytes()), kit::kTensorArenaSize);
  const uint32_t per_second = tflite::ticks_per_second();
  if (per_second > 0) {
    const uint64_t us = static_cast<uint64_t>(ticks) * 1000000u / per_second / runs;
    MicroPrintf("time per inference: %d us (%d ticks over %d runs)", static_cast<int>(us),
                static_cast<int>(ticks), runs);
  } else {
    MicroPrintf("time per inference: no timer on this target (%d runs)", runs);
  }
  if (failed_samples) {
    MicroPrintf("FAIL: %d of %d golden samples differ", failed_samples, kit::kNumTestSamples);
    return 1;
  }
  MicroPrintf("PASS: %d of %d golden samples bit-exact", kit::kNumTestSamples,
              kit::kNumTestSamples);
  return 0;
}
