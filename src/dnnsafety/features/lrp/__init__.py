"""Layer-wise relevance propagation (LRP): the relevance entering every layer, in one pass.

HUDD (METHOD.md §2.2) explains each input by LRP, starting from the *predicted* class's raw
logit (every other output zeroed), and keeps the relevance *entering* each layer: the heatmap of
"layer k" is the relevance of the input tensor of module k. All layers come from one backward
pass per batch.

Rule sets
---------
Two rule sets live in :data:`RULESETS`:

``hudd``
    The released HUDD tool's rules: ``nn.Linear`` = z+ (positive weights only, bias ignored,
    denominator ``z + 1e-9``, :class:`HuddZPlus`); Conv/ConvTranspose = epsilon rule with
    ``epsilon = 1e-9`` whose denominator is the output *including* the bias (zennit's
    :class:`~zennit.rules.Epsilon`; the stabiliser takes the sign of ``z``); MaxPool =
    winner-take-all (the gradient of max pooling); ReLU and other activations = pass;
    Dropout (eval mode) and Flatten = identity. The tool only handled plain sequential nets;
    for others it is extended as follows (documented deviations): BatchNorm layers are merged
    into the conv/linear layer right before them (a BatchNorm that does not follow such a layer
    raises :class:`~dnnsafety.exceptions.ConfigError`), residual additions and average pooling
    split relevance in proportion to their inputs (zennit's ``Norm`` rule, stabiliser 1e-9).
``default``
    zennit's ``EpsilonPlusFlat`` preset: Flat for the first conv/linear layer, z+ for the other
    convolutions, epsilon (1e-6) for linear layers, pass for activations, proportional split
    for sums and average pooling, plus the same canonizers.

Canonizers
----------
BatchNorm is merged into the preceding conv/linear layer (zennit's
``SequentialMergeBatchNorm``, tuned so that the emptied BatchNorm computes the identity instead
of ``x / sqrt(1 + eps)``). The zoo's ResNet adds ``out + shortcut(x)`` inside
:class:`dnnsafety.models.zoo.BasicBlock`. The gradient of a tensor ``+`` sends the whole upper
relevance into *both* branches, so every block doubles the relevance: not conservative.
:class:`ZooBasicBlockCanonizer` therefore rewrites the block's forward, like zennit's canonizer
for torchvision's ResNet, to ``relu2(Sum(stack([shortcut(x), out])))`` so that a rule can
attach to the addition (:class:`ResidualSum`); both rule sets give that ``Sum`` the
proportional (epsilon-style) split ``R_branch = x_branch / (x_shortcut + x_out) * R``, which
conserves relevance. zennit's torchvision ResNet canonizers are applied too when the model
contains torchvision blocks.
Every canonizer is undone when the pass ends, also when it raises.

One pass for all layers
-----------------------
A forward pre-hook on each chosen module grabs the module's input tensor and registers a tensor
hook on it. Under LRP rule hooks the gradient that reaches a tensor *is* its relevance, so one
call of ``torch.autograd.grad(logits, image, R0)`` fills every layer's map, and its result is
the pixel-level map ``"input"``. When one tensor feeds several modules (a residual block's
input goes to ``conv1`` and to the shortcut), its recorded relevance is the total that reaches
the tensor from all its consumers, i.e. the relevance of that representation; such layers are
listed once by default (see :func:`find_layers`).

Backends
--------
``"zennit"`` registers zennit's rule hooks (the reference). ``"fast"`` assigns the same rules
to the same modules (:meth:`RuleSet.assign` mirrors zennit's mapping; same canonizers) but runs
each rule module through one custom autograd function (:class:`_RuleFunction`): the forward
runs the module unchanged, the backward maps the upper relevance ``R`` of the output to
``x * rho(W)^T (R / stab(z'))`` directly. Where zennit re-runs every layer in its backward hook
(twice for z+, once per sign of the input) and calls autograd on it, the fast backend

* reuses the forward output for the epsilon rule (``z' = z``), so a conv costs one transposed
  convolution, like a plain backward without the weight gradient;
* computes z+ with one extra convolution and skips the negative-input half when the input is
  non-negative (always, after a ReLU);
* computes the flat rule (all-ones weights) from one single-channel transposed convolution;
* splits residual sums in one fused function (:class:`ResidualSum`) instead of stacking;
* stabilises in two elementwise passes and updates temporaries in place.

The fast and zennit maps agree to float rounding (tests: ``rtol=1e-9`` in float64; the
benchmark: at most 4e-7 of a map's largest value in float32). On a CPU the fast pass costs
about one forward plus backward (``benchmarks/results/lrp.md``). ``"auto"`` (default) uses the
fast backend and falls back to zennit when the model does something it does not support (a
rule module called with several inputs, an in-place change of a tensor the fast rules saved).
"""

from dnnsafety.features.lrp._fast import _FastUnsupported as _FastUnsupported
from dnnsafety.features.lrp.attribute import BACKENDS, LayerRelevance, layer_relevance
from dnnsafety.features.lrp.attribute import _check_backend as _check_backend
from dnnsafety.features.lrp.canonizers import MergeBatchNorm, ResidualSum, ZooBasicBlockCanonizer
from dnnsafety.features.lrp.layers import (
    CANDIDATE_TYPES,
    INPUT_LAYER,
    LayerInfo,
    as_batch,
    find_layers,
)
from dnnsafety.features.lrp.layers import _eval_mode as _eval_mode
from dnnsafety.features.lrp.rules import (
    DEFAULT_RULES,
    HUDD_RULES,
    RULESETS,
    HuddZPlus,
    Rule,
    RuleKind,
    RuleMap,
    RuleSet,
    get_ruleset,
)

# the private names imported "as" themselves keep their old import path (features.store and
# features.coverage use _check_backend and _eval_mode)
__all__ = [
    "BACKENDS",
    "CANDIDATE_TYPES",
    "DEFAULT_RULES",
    "HUDD_RULES",
    "INPUT_LAYER",
    "RULESETS",
    "HuddZPlus",
    "LayerInfo",
    "LayerRelevance",
    "MergeBatchNorm",
    "ResidualSum",
    "Rule",
    "RuleKind",
    "RuleMap",
    "RuleSet",
    "ZooBasicBlockCanonizer",
    "as_batch",
    "find_layers",
    "get_ruleset",
    "layer_relevance",
]
