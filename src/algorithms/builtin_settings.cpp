// The built-in algorithms' hyperparameters in the settings table: those several rules share,
// and the order in which every rule's own are declared.
#include "algorithms/builtin.h"
#include "settings_table.h"

namespace downhill::detail {

const SharedHyperparameters& shared_hyperparameters() {
  static const SharedHyperparameters declared{
      .rms_halflife = Setting<double>({.name = "rms_halflife",
                                       .default_value = 14.0,
                                       .check = checks::positive(),
                                       .doc = "Half-life (in updates) of the running averages of "
                                              "RMSProp, ADADELTA and ESGD; > 0."}),
      .rms_regularizer = Setting<double>({.name = "rms_regularizer",
                                          .default_value = 1e-8,
                                          .check = checks::non_negative(),
                                          .doc = "epsilon added to the denominators of RMSProp, "
                                                 "ADAGRAD, ADADELTA, ESGD and Adam; >= 0."}),
  };
  return declared;
}

void declare_builtin_hyperparameters() {
  shared_hyperparameters();
#define DOWNHILL_DECLARE_SETTINGS(id) declare_##id##_settings();
  DOWNHILL_BUILTIN_ALGORITHMS(DOWNHILL_DECLARE_SETTINGS)
  DOWNHILL_SEARCH_ALGORITHMS(DOWNHILL_DECLARE_SETTINGS)
#undef DOWNHILL_DECLARE_SETTINGS
}

}  // namespace downhill::detail
