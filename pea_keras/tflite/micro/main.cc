// Self-test of one model's TensorFlow Lite Micro kit, as written by `pea-tflite convert`:
// runs the kit's golden inputs (every input tensor) through tflite::MicroInterpreter, compares
// every byte of every output tensor with the outputs TFLite Micro's reference kernels computed
// when the kit was made, and prints PASS or FAIL, the arena used and the time per inference.
// Exit code 0 = every output bit-exact.
//
// Compile it with the kit's folder on the include path, TFLite Micro's CXXFLAGS and INCLUDES for
// your target, and the kit's name as PEA_MODEL: the -DPEA_MODEL=... that `pea-tflite convert`
// printed, e.g. -DPEA_MODEL=tiny_pea_digits_int8 for tiny_pea_digits_int8_model_data.cc and its
// neighbours (the file's stem as a C identifier); link <name>_model_data.cc,
// <name>_test_data.cc and the TFLite Micro library. Optional: -DPEA_TIMED_RUNS=N adds N timed
// inferences of the first sample (default 10). tflite/README.md walks through a build.
// Plain C++11 on top of TFLite Micro: no heap, no file system, no OS.

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "tensorflow/lite/micro/micro_time.h"
#include "tensorflow/lite/micro/system_setup.h"
#include "tensorflow/lite/schema/schema_generated.h"

#ifndef PEA_MODEL
#error "Define PEA_MODEL as the kit's name that pea-tflite convert printed, e.g. -DPEA_MODEL=tiny_pea_digits_int8"
#endif
#ifndef PEA_TIMED_RUNS
#define PEA_TIMED_RUNS 10
#endif

#define PEA_STR_(x) #x
#define PEA_STR(x) PEA_STR_(x)
#define PEA_CAT_(a, b) a##b
#define PEA_CAT(a, b) PEA_CAT_(a, b)
// PEA_KIT_FILE(_model_data) -> "<name>_model_data.h"
#define PEA_KIT_FILE(suffix) PEA_STR(PEA_CAT(PEA_MODEL, suffix).h)

#include PEA_KIT_FILE(_model_data)
#include PEA_KIT_FILE(_model_settings)
#include PEA_KIT_FILE(_op_resolver)
#include PEA_KIT_FILE(_test_data)

#define PEA_MODEL_DATA PEA_CAT(PEA_CAT(g_, PEA_MODEL), _model_data)
namespace kit = PEA_CAT(PEA_MODEL, _model);

#if defined(__GNUC__)
// TFLite Micro's cortex_m_generic target logs only through a callback the application registers
// (tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h); other targets have no such
// function. A weak reference is null where the library lacks it, so one main.cc serves both.
// Compilers without weak symbols: call RegisterDebugLogCallback yourself on that target.
extern "C" void RegisterDebugLogCallback(void (*callback)(const char* s)) __attribute__((weak));
// Where that log goes: stdout, i.e. semihosting, or the UART your board support retargets it to.
static void WriteLog(const char* s) { fputs(s, stdout); }
#endif

namespace {

alignas(16) uint8_t tensor_arena[kit::kTensorArenaSize];

int Fail(const char* why) {
  MicroPrintf("FAIL: %s", why);
  return 1;
}

// One element of a tensor of `type` as a number (for the size of a difference).
double Element(TfLiteType type, const void* data, int i) {
  switch (type) {
    case kTfLiteInt8: return static_cast<double>(static_cast<const int8_t*>(data)[i]);
    case kTfLiteUInt8: return static_cast<double>(static_cast<const uint8_t*>(data)[i]);
    case kTfLiteInt16: return static_cast<double>(static_cast<const int16_t*>(data)[i]);
    case kTfLiteInt32: return static_cast<double>(static_cast<const int32_t*>(data)[i]);
    case kTfLiteFloat32: return static_cast<double>(static_cast<const float*>(data)[i]);
    default: return 0;
  }
}

int ElementBytes(TfLiteType type) {
  switch (type) {
    case kTfLiteInt16: return 2;
    case kTfLiteInt32:
    case kTfLiteFloat32: return 4;
    default: return 1;
  }
}

// Elements of `output` that differ from `expected` (one sample of the tensor's golden outputs);
// adds them to *elements and *mismatches and raises *max_diff to the largest difference.
void Compare(const TfLiteTensor* output, const void* expected, int* elements, int* mismatches,
             double* max_diff) {
  const int size = ElementBytes(output->type);
  const int n = static_cast<int>(output->bytes) / size;
  for (int i = 0; i < n; ++i) {
    if (memcmp(static_cast<const char*>(output->data.data) + i * size,
               static_cast<const char*>(expected) + i * size, size) != 0) {
      double diff = Element(output->type, output->data.data, i) - Element(output->type, expected, i);
      if (diff < 0) diff = -diff;
      if (diff > *max_diff) *max_diff = diff;
      ++*mismatches;
    }
  }
  *elements += n;
}

// Sample `s` of a tensor's golden data.
const void* Sample(const kit::GoldenTensor& golden, int s) {
  return static_cast<const char*>(golden.samples) + s * golden.sample_bytes;
}

}  // namespace

int main(int argc, char* argv[]) {
  (void)argc;
  (void)argv;
#if defined(__GNUC__)
  if (RegisterDebugLogCallback) RegisterDebugLogCallback(WriteLog);
#endif
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
  for (int i = 0; i < kit::kNumInputs; ++i) {
    if (interpreter.input(i)->bytes != kit::kGoldenInputs[i].sample_bytes) {
      return Fail("an input tensor's size differs from the model settings");
    }
  }
  for (int i = 0; i < kit::kNumOutputs; ++i) {
    if (interpreter.output(i)->bytes != kit::kGoldenOutputs[i].sample_bytes) {
      return Fail("an output tensor's size differs from the model settings");
    }
  }

  int failed_samples = 0;
  uint64_t ticks = 0;
  int runs = 0;
  for (int s = 0; s < kit::kNumTestSamples + PEA_TIMED_RUNS; ++s) {
    const int sample = s < kit::kNumTestSamples ? s : 0;
    for (int i = 0; i < kit::kNumInputs; ++i) {
      memcpy(interpreter.input(i)->data.data, Sample(kit::kGoldenInputs[i], sample),
             kit::kGoldenInputs[i].sample_bytes);
    }
    const uint32_t start = tflite::GetCurrentTimeTicks();
    if (interpreter.Invoke() != kTfLiteOk) return Fail("Invoke failed");
    ticks += static_cast<uint32_t>(tflite::GetCurrentTimeTicks() - start);
    ++runs;
    if (s >= kit::kNumTestSamples) continue;
    int elements = 0, bad = 0;
    double max_diff = 0;
    for (int i = 0; i < kit::kNumOutputs; ++i) {
      Compare(interpreter.output(i), Sample(kit::kGoldenOutputs[i], s), &elements, &bad, &max_diff);
    }
    if (bad) {
      ++failed_samples;
      MicroPrintf("sample %d: %d of %d outputs differ, by up to %d", s, bad, elements,
                  static_cast<int>(max_diff + 0.5));
    } else {
      MicroPrintf("sample %d: %d outputs bit-exact", s, elements);
    }
  }

  MicroPrintf("model %d bytes, arena %d of %d bytes used", kit::kModelBytes,
              static_cast<int>(interpreter.arena_used_bytes()), kit::kTensorArenaSize);
  // The tick rate is 0 where TFLite Micro does not know it (cortex_m_generic counts CPU cycles,
  // other targets may not count at all): then the raw ticks are all there is to print.
  const uint32_t per_second = tflite::ticks_per_second();
  const int per_run = static_cast<int>(ticks / runs);
  if (per_second > 0) {
    const int us = static_cast<int>(ticks * 1000000u / per_second / runs);
    MicroPrintf("time per inference: %d us (%d ticks at %d per second, mean of %d runs)", us, per_run,
                static_cast<int>(per_second), runs);
  } else if (ticks > 0) {
    MicroPrintf("time per inference: %d ticks, mean of %d runs (tick rate unknown on this target; "
                "on cortex_m_generic a tick is a CPU cycle)", per_run, runs);
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
