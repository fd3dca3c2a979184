// A torch::nn classifier trained by downhill: an MLP 64→128→10 on the 8×8 handwritten
// digits that Debian's python3-sklearn ships, the way a PyTorch user would set it up —
// a Module whose layers are built one statement each (so that their random initial
// weights come in a fixed order), a fresh permutation of the samples every epoch
// (DatasetOptions::shuffle_samples, like DataLoader(shuffle=True)), Adam, and early
// stopping on a held-out fifth of the images.
//
// Usage: digits_classifier [--epochs N] [--data PATH]
#include <downhill/downhill.h>
#include <torch/torch.h>

#include <iomanip>
#include <iostream>
#include <stdexcept>
#include <string>

#include "digits_data.h"

namespace {

double accuracy(const torch::Tensor& logits, const torch::Tensor& labels) {
  return logits.argmax(1).eq(labels).to(torch::kDouble).mean().item<double>();
}

}  // namespace

int main(int argc, char** argv) try {
  int64_t epochs = 30;
  std::string path = digits::kDefaultPath;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--epochs") {
      epochs = std::stoll(argv[i + 1]);
    } else if (flag == "--data") {
      path = argv[i + 1];
    } else {
      throw std::invalid_argument("unknown option " + flag + "; usage: " + argv[0] +
                                  " [--epochs N] [--data PATH]");
    }
  }

  torch::manual_seed(0);
  const auto images = digits::load(path);
  const auto [x_train, y_train, x_valid, y_valid] = digits::hold_out_fifth(images);

  auto model = std::make_shared<digits::Mlp>();
  auto loss = [&](const downhill::Batch& batch) {
    return digits::classification_loss(*model, batch);
  };

  downhill::Dataset train(
      {x_train, y_train},
      downhill::DatasetOptions().name("train").batch_size(32).shuffle_samples(true).generator(
          at::detail::createCPUGenerator(1)));
  downhill::Dataset valid({x_valid, y_valid},
                          downhill::DatasetOptions().name("valid").batch_size(0));
  const double chance = [&] {
    torch::NoGradGuard no_grad;
    return accuracy(model->forward(x_valid), y_valid);
  }();

  downhill::minimize(loss, model->named_parameters(), train, valid,
                     downhill::Options()
                         .algo("adam")
                         .learning_rate(1e-3)
                         .validate_every(1)
                         .patience(5)
                         .max_updates(epochs));

  // The loop restored the parameters of the best validation.
  torch::NoGradGuard no_grad;
  const double trained = accuracy(model->forward(x_valid), y_valid);
  std::cout << std::fixed << std::setprecision(4) << "validation accuracy: " << chance
            << " before training, " << trained << " after (" << x_train.size(0)
            << " training images, " << x_valid.size(0) << " held out)\n";
  // An MLP of this size reaches about 0.97 on held-out digits; far below means training failed.
  if (!(trained > 0.9)) {
    std::cerr << "digits_classifier: validation accuracy " << trained << " is below 0.9\n";
    return 1;
  }
  return 0;
} catch (const std::exception& e) {
  std::cerr << "digits_classifier: " << e.what() << "\n";
  return 1;
}
