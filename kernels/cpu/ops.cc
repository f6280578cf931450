#include "kernels/ops.h"

namespace tessera {

const OpTable& CpuOps() {
  static const OpTable table = [] {
    OpTable t;
    t.name = "cpu";
    t.device = Device::kCpu;
    t.embedding = EmbeddingCpu;
    t.rms_norm = RmsNormCpu;
    t.linear = LinearCpu;
    t.rope = RopeCpu;
    t.kv_write = KvCacheWriteCpu;
    t.attention = AttentionCpu;
    t.swiglu = SwiGluCpu;
    t.residual_add = ResidualAddCpu;
    t.lora_apply = LoraApplyCpu;
    t.diablo_apply = DiabloApplyCpu;
    t.road_apply = RoadApplyCpu;
    return t;
  }();
  return table;
}

}  // namespace tessera
