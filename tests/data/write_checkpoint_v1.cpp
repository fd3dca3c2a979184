// Wrote tests/data/checkpoint_v1.ckpt, built against downhill as of format version 1 (main at
// a5af6de, the last to write "downhill-checkpoint-1"). Kept to show how the file was made;
// it is not built. checkpoint_schema_test loads the file and derives its values by hand:
// ADAGRAD (lr 0.1, rms_regularizer 0.01) with momentum 0.5, two updates of known gradients.
#include <downhill/downhill.h>
#include <torch/torch.h>

int main(int argc, char** argv) {
  auto w = torch::tensor({1.0f, 2.0f, 3.0f});
  auto b = torch::tensor({0.5}, torch::kDouble);
  auto opt =
      downhill::build("adagrad", {{"w", w}, {"b", b}},
                      downhill::Options().learning_rate(0.1).momentum(0.5).rms_regularizer(0.01));
  opt->apply({torch::tensor({1.0f, 1.0f, 1.0f}), torch::tensor({2.0}, torch::kDouble)});
  opt->apply({torch::tensor({2.0f, 0.0f, -2.0f}), torch::tensor({-1.0}, torch::kDouble)});
  opt->save_checkpoint(argc > 1 ? argv[1] : "checkpoint_v1.ckpt");
}
