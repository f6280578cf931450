// An upload stream: length-prefixed UploadAdapterRequest messages fed to an
// UploadSession on a real serving stack and store (tiny fixture model, store
// in a scratch folder); a committed adapter is deleted again.
#include "server/api/upload_session.h"
#include "server/serving/serving_stack.h"
#include "spdlog/spdlog.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessera;
  static ServingStack* stack = [] {
    spdlog::set_level(spdlog::level::off);
    ServingOptions o;
    o.model_dir = TESSERA_FIXTURES_DIR "/tiny-llama/model";
    o.num_threads = 1;
    o.quant = {WeightFormat::kF32, 128};
    o.data_dir = fuzz::ScratchDir() + "/data";
    return BuildServingStack(o)->release();
  }();
  static AdapterCatalog* catalog = new AdapterCatalog(stack, 1 << 20);
  static const Tenant tenant = [] {
    Tenant t;
    t.id = "fuzz";
    t.role = TenantRole::kUser;
    t.max_adapters = 4;
    t.max_adapter_bytes = 4 << 20;
    return t;
  }();
  UploadSession session(catalog, tenant);
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  for (int n = 0; n < 64 && rest.size() >= 2; ++n) {
    const size_t len = std::min<size_t>(rest.size() - 2, static_cast<uint8_t>(rest[0]) | (static_cast<uint8_t>(rest[1]) << 8));
    v1::UploadAdapterRequest m;
    const bool parsed = m.ParseFromArray(rest.data() + 2, static_cast<int>(len));
    rest.remove_prefix(2 + len);
    if (!parsed) break;
    absl::StatusOr<UploadSession::Next> next = session.Add(m);
    if (!next.ok()) break;
    if (*next == UploadSession::Next::kCommit) {
      absl::StatusOr<v1::AdapterInfo> info = session.Commit();
      if (info.ok()) (void)catalog->Delete(tenant, info->name());
      break;
    }
  }
  return 0;
}
