using Microsoft.ML.Hazy.Heads;
using Microsoft.ML.Hazy.Layers;
using Microsoft.ML.Hazy.Onnx;
using Microsoft.ML.Hazy.Sequence.S4D;
using Microsoft.ML.Hazy.Training;

namespace Microsoft.ML.Hazy.Sequence;

/// <summary>
/// Trains a sequence model on a sequence column with TorchSharp, for multiclass or binary classification or
/// regression: a linear encoder of each time step, residual blocks of the chosen backbone (S4D diagonal
/// state-space layers), mean pooling over the valid time steps and a linear decoder. The trained model
/// scores through ONNX Runtime in standard ML.NET.
/// </summary>
/// <remarks>
/// <format type="text/markdown"><![CDATA[
/// ### Input and output columns
/// | Input column | Type |
/// | -- | -- |
/// | `Label` | key (multiclass), Boolean (binary) or Single (regression) |
/// | `Features` | vector of Single: L time steps of C channels, time-major (value `t·C + c` is channel c at step t). Known size L·C for sequences of one length; variable size (a whole number of steps per row) for sequences of different lengths |
///
/// | Output column | Type | Task |
/// | -- | -- | -- |
/// | `Score` | vector of Single (class probabilities), or Single | all |
/// | `Probability` | Single | binary |
/// | `PredictedLabel` | key with the label's values, or Boolean | classification |
///
/// Variable-length rows are zero-padded to the longest of each batch and masked, so padding changes neither
/// the pooled features nor (bidirectional) layers. After training, the exported graph applies each layer's
/// fixed kernel as a convolution; a variable-length model accepts rows of up to
/// <see cref="Options.MaximumLength"/> steps (default: the longest training row). A causal model can also
/// score a live stream one step at a time with <see cref="SequenceStreamingPredictor"/>. A variable-length row with no
/// time steps is refused in training (naming its row) and scores as a sequence of one all-zero step.
///
/// Before the first step the trainer estimates the memory of one batch (<c>BatchSize</c> rows of the longest row's length;
/// the activations each layer keeps for the backward pass, S4D's FFT buffers of length 2L) and refuses a configuration
/// that needs more than the memory available.
///
/// Training is deterministic for a given seed, runs on the GPU given by `MLContext.GpuDeviceId` when a CUDA
/// runtime is present, reports each epoch to `MLContext.Log` and can be cancelled: the network checks
/// `CancellationToken` before each layer, so cancelling takes effect within a long step.
/// ]]></format>
/// </remarks>
public sealed class SequenceTrainer : HazyTrainer<SequenceTrainer.Options>
{
    /// <summary>
    /// Options of the sequence trainer. The layers follow the reference S4D model (post-norm LayerNorm, dropout 0.1,
    /// AdamW 0.01 / 0.01); width, depth, batch size and epochs are sized to the training data unless set.
    /// </summary>
    /// <remarks>
    /// <see cref="ModelDimension"/>, <see cref="NumberOfLayers"/>, <see cref="HazyTrainerOptions.BatchSize"/> and
    /// <see cref="HazyTrainerOptions.NumberOfEpochs"/> default to 0, which sizes them when training starts: fewer than
    /// 2,000 rows train in batches of 16 and from 2,000 rows in batches of 32; fewer than 10,000 rows get 3 blocks of
    /// width 64 and more rows the reference's 4 × 128, at half the width for sequences longer than 512 steps; and epochs
    /// left at 0 become the fewest that take 300 optimizer steps (see <see cref="HazyTrainerOptions.MinimumSteps"/>), with a
    /// tenth of the rows held out to keep the best epoch when there are at least 1,000 and no validation set is given
    /// (see <see cref="HazyTrainerOptions.ValidationFraction"/>).
    /// A value you set is kept. <see cref="Presets"/> holds complete recipes measured on real data sets.
    /// </remarks>
    public sealed class Options : HazyTrainerOptions
    {
        /// <summary>The sequence trainer's defaults, used by these options and by the catalog's short overloads.</summary>
        public static new class Defaults
        {
            /// <summary>Passes over the training data: 0, the fewest epochs that take 300 optimizer steps.</summary>
            public const int NumberOfEpochs = 0;

            /// <summary>Rows per optimizer step: 0, sized to the data (16 below 2,000 rows, else 32).</summary>
            public const int BatchSize = 0;

            /// <summary>Peak learning rate: the reference's 1e-2 (the state-space parameters keep their own).</summary>
            public const double LearningRate = 1e-2;

            /// <summary>Weight decay: the reference's 1e-2.</summary>
            public const double WeightDecay = 1e-2;

            /// <summary>Values per time step: 1.</summary>
            public const int Channels = 1;

            /// <summary>The layer type of the blocks: S4D.</summary>
            public const SequenceBackbone Backbone = SequenceBackbone.S4D;

            /// <summary>The model dimension H: 0, sized to the data.</summary>
            public const int ModelDimension = 0;

            /// <summary>The number of blocks: 0, sized to the data.</summary>
            public const int NumberOfLayers = 0;

            /// <summary>Dropout: 0.1.</summary>
            public const double DropoutRate = 0.1;

            /// <summary>The blocks' normalisation: LayerNorm.</summary>
            public const SequenceNormalization Normalization = SequenceNormalization.LayerNorm;

            /// <summary>Per-series z-normalisation: off (the values reach the encoder as they are).</summary>
            public const bool NormalizeSeries = false;

            /// <summary>Pooling over time: the mean over the valid steps.</summary>
            public const SequencePooling Pooling = SequencePooling.Mean;

            /// <summary>The fraction of each series a random training crop keeps: 1, no crop.</summary>
            public const double RandomCropFraction = 1;

            /// <summary>Training jitter: 0, none.</summary>
            public const double JitterStandardDeviation = 0;

            /// <summary>Training scaling: 0, none.</summary>
            public const double ScalingStandardDeviation = 0;

            /// <summary>No time mask: 0.</summary>
            public const double TimeMaskFraction = 0;
        }

        /// <summary>Sets the reference's learning rate and weight decay, and leaves batch size and epochs to be sized to the data.</summary>
        public Options()
        {
            LearningRate = Defaults.LearningRate;
            WeightDecay = Defaults.WeightDecay;
            BatchSize = Defaults.BatchSize;
            NumberOfEpochs = Defaults.NumberOfEpochs;
        }

        /// <summary>Values per time step: 1 for a univariate series, C for C channels interleaved time-major.</summary>
        public int Channels { get; set; } = Defaults.Channels;

        /// <summary>
        /// For a variable-size feature column, the most time steps a row may have when the exported model scores it;
        /// 0 takes the longest training row. Ignored for a known-size column (every row has its length).
        /// </summary>
        public int MaximumLength { get; set; }

        /// <summary>The layer type of the blocks.</summary>
        public SequenceBackbone Backbone { get; set; } = Defaults.Backbone;

        /// <summary>The model dimension H: the encoder's output width and every block's width; 0 (the default) sizes it to the data.</summary>
        public int ModelDimension { get; set; } = Defaults.ModelDimension;

        /// <summary>The number of blocks; 0 (the default) sizes it to the data.</summary>
        public int NumberOfLayers { get; set; } = Defaults.NumberOfLayers;

        /// <summary>Dropout inside layers and on each residual branch, one mask per row and feature shared across time.</summary>
        public double DropoutRate { get; set; } = Defaults.DropoutRate;

        /// <summary>The blocks' normalisation.</summary>
        public SequenceNormalization Normalization { get; set; } = Defaults.Normalization;

        /// <summary>Normalise before each layer (pre-norm, with a final norm) instead of after the residual sum (post-norm).</summary>
        public bool PreNorm { get; set; }

        /// <summary>Let layers see later steps too (for classification of whole sequences); a bidirectional model cannot stream.</summary>
        public bool Bidirectional { get; set; }

        /// <summary>
        /// Blocks of each factor when the backbone's projections are Monarch matrices (<see cref="Layers.Monarch.MonarchLinear"/>):
        /// S4D's GLU output projection, the Transformer's query, key, value and output projections and its feed-forward
        /// layers. 0 keeps them dense. Capped at each layer's smaller width. The encoder (C → H) and the decoder stay dense.
        /// </summary>
        public int MonarchBlocks { get; set; }

        /// <summary>
        /// Z-normalise each series before the encoder: every channel of every row minus its mean, divided by its standard
        /// deviation (population, plus 1e-8 under the root), both over the row's valid steps only. Part of the network, so the
        /// exported ONNX graph does the same when scoring. It discards each series' level and scale, which is what most UCR-style
        /// shape classification wants and what hurts where amplitude tells the classes apart.
        /// </summary>
        public bool NormalizeSeries { get; set; } = Defaults.NormalizeSeries;

        /// <summary>How the last block's outputs are pooled over the valid time steps: mean, last valid step or attention.</summary>
        public SequencePooling Pooling { get; set; } = Defaults.Pooling;

        /// <summary>
        /// Training augmentation: each training row is replaced by a random window of this fraction of its valid steps
        /// (a random crop that also shifts the series in time), in (0, 1]; 1 turns it off. Scoring always sees whole rows.
        /// </summary>
        public double RandomCropFraction { get; set; } = Defaults.RandomCropFraction;

        /// <summary>Training augmentation: the standard deviation of Gaussian noise added to every valid value (after <see cref="NormalizeSeries"/>); 0 turns it off.</summary>
        public double JitterStandardDeviation { get; set; } = Defaults.JitterStandardDeviation;

        /// <summary>
        /// Training augmentation: the standard deviation σ of a factor 1 + σ·N(0, 1) drawn per row and channel and multiplied in
        /// (after <see cref="NormalizeSeries"/>, so it still varies the scale the network sees); 0 turns it off.
        /// </summary>
        /// <remarks>
        /// The augmentations apply in training mode only, in the order crop, scale, jitter, and draw from the run's generator, so a
        /// seed gives the same augmented batches every time; validation and scoring see the rows unchanged.
        /// </remarks>
        public double ScalingStandardDeviation { get; set; } = Defaults.ScalingStandardDeviation;

        /// <summary>
        /// Training augmentation: the fraction of each row's valid steps (after the crop) that a random contiguous span sets to 0
        /// in every channel, in [0, 1); 0 turns it off. Applied after the crop and before scaling and jitter.
        /// </summary>
        public double TimeMaskFraction { get; set; } = Defaults.TimeMaskFraction;

        /// <summary>Options of the S4D backbone.</summary>
        public S4DOptions S4D { get; set; } = new();

        /// <summary>Options of the Transformer backbone.</summary>
        public Attention.TransformerOptions Transformer { get; set; } = new();

        private protected override bool SizesToData => true;

        internal override void Check()
        {
            base.Check();
            Require(Channels > 0, nameof(Channels), Channels, "must be positive");
            Require(MaximumLength >= 0, nameof(MaximumLength), MaximumLength, "must not be negative");
            Require(ModelDimension >= 0, nameof(ModelDimension), ModelDimension, "must be positive, or 0 to size it to the data");
            Require(NumberOfLayers >= 0, nameof(NumberOfLayers), NumberOfLayers, "must be positive, or 0 to size it to the data");
            RequireRate(DropoutRate, nameof(DropoutRate));
            Require(Enum.IsDefined(Pooling), nameof(Pooling), Pooling, "must be Mean, LastStep or Attention");
            Require(RandomCropFraction > 0 && RandomCropFraction <= 1, nameof(RandomCropFraction), RandomCropFraction, "must be in (0, 1]; 1 turns the crop off");
            Require(JitterStandardDeviation >= 0 && double.IsFinite(JitterStandardDeviation), nameof(JitterStandardDeviation), JitterStandardDeviation, "must be a finite non-negative number");
            Require(ScalingStandardDeviation >= 0 && double.IsFinite(ScalingStandardDeviation), nameof(ScalingStandardDeviation), ScalingStandardDeviation, "must be a finite non-negative number");
            Require(TimeMaskFraction >= 0 && TimeMaskFraction < 1, nameof(TimeMaskFraction), TimeMaskFraction, "must be in [0, 1); 0 turns the time mask off");
            Require(MonarchBlocks >= 0, nameof(MonarchBlocks), MonarchBlocks, "must be 0 (dense) or a positive block count");
            // The backbone checks its own options (S4D's state size, the Transformer's heads) as it is built.
            SequenceBackbones.Create(this);
        }

        /// <summary>A shallow copy.</summary>
        internal Options Copy() => (Options)MemberwiseClone();

        /// <summary>The network's block shape and input treatment (normalisation, pooling, training augmentations) these options describe.</summary>
        internal (SequenceNetworkShape Shape, SequenceInputTreatment Treatment) NetworkShape() =>
            (new SequenceNetworkShape(ModelDimension, DropoutRate, Bidirectional, MonarchBlocks),
             new SequenceInputTreatment(NormalizeSeries, Pooling,
                 new SequenceAugmentation(RandomCropFraction, JitterStandardDeviation, ScalingStandardDeviation, TimeMaskFraction)));

        /// <summary>
        /// Complete recipes to start from, measured by the samples (<c>Hazy.Samples s4d</c>): each returns new options
        /// that can be changed before they are passed to a trainer.
        /// </summary>
        public static class Presets
        {
            /// <summary>
            /// Time-series classification on a few dozen to a few hundred series (the UCR/UEA archive): a bidirectional
            /// 3 × 64 S4D backbone, batches of 16, AdamW 0.01 with weight decay 0.05, 10 % warm-up, at least 20 epochs
            /// and 400 optimizer steps, mean pooling, and per-series z-normalisation for univariate series only.
            /// </summary>
            /// <remarks>
            /// <see cref="NormalizeSeries"/> is on for one channel and off for several: the univariate UCR archive is
            /// distributed z-normalised and compares shapes, so normalising is harmless there and puts series recorded in
            /// raw units (PickupGestureWiimoteZ) on the same footing; in multivariate sets the channels' levels and relative
            /// amplitudes carry the class (BasicMotions' accelerometer, JapaneseVowels' cepstra), and normalising them
            /// cost 5 and 19 points in the <c>s4d</c> sample. With this preset the sample reached 0.78–1.00 on its six
            /// UCR sets in under three minutes of training each on two busy cores (see the README's table).
            /// </remarks>
            public static Options UcrClassification(int channels = 1, int maximumLength = 0) => new()
            {
                Channels = channels,
                MaximumLength = maximumLength,
                ModelDimension = 64,
                NumberOfLayers = 3,
                Bidirectional = true,
                DropoutRate = 0.1,
                NumberOfEpochs = 20,
                MinimumSteps = 400,
                BatchSize = 16,
                LearningRate = 1e-2,
                WeightDecay = 5e-2,
                WarmupFraction = 0.1,
                NormalizeSeries = channels == 1,
                S4D = new S4DOptions { StateSize = 64 },
            };

            /// <summary>
            /// Images read as sequences of pixels (sequential Fashion-MNIST: 784 steps of one channel), tens of thousands of
            /// rows: a bidirectional pre-norm 3 × 32 S4D backbone with BatchNorm and no dropout, batches of 32, AdamW 0.02 with
            /// weight decay 0.01, 5 % warm-up, 3 epochs, and a state-space learning rate of 0.005.
            /// </summary>
            /// <remarks>Width and epochs are what a 20-minute budget on two cores allows at 784 steps per row.</remarks>
            /// <param name="channels">Values per pixel (1 for grey images).</param>
            /// <param name="numberOfEpochs">Passes over the data.</param>
            /// <returns>New options with the recipe; the default columns <c>Label</c> and <c>Features</c>.</returns>
            public static Options SequentialImage(int channels = 1, int numberOfEpochs = 3) => new()
            {
                Channels = channels,
                ModelDimension = 32,
                NumberOfLayers = 3,
                Bidirectional = true,
                PreNorm = true,
                Normalization = SequenceNormalization.BatchNorm,
                DropoutRate = 0,
                NumberOfEpochs = numberOfEpochs,
                BatchSize = 32,
                LearningRate = 2e-2,
                WeightDecay = 1e-2,
                WarmupFraction = 0.05,
                S4D = new S4DOptions { StateSize = 64, SsmLearningRate = 5e-3 },
            };
        }

        /// <summary>A copy whose parameter groups also hold the backbone's, addressed in every block.</summary>
        internal Options WithLayerGroups(IEnumerable<ParameterGroupOptions> layerGroups)
        {
            var copy = (Options)MemberwiseClone();
            copy.ParameterGroups = ParameterGroups
                .Concat(layerGroups.Select(g => new ParameterGroupOptions { NamePrefix = "blocks.*.layer." + g.NamePrefix, LearningRate = g.LearningRate, WeightDecay = g.WeightDecay }))
                .ToList();
            return copy;
        }
    }

    internal SequenceTrainer(HazyEnvironment env, Options options, PredictionKind kind)
        : base(env, "Hazy.Sequence", options, kind)
    {
    }

    private protected override SequenceInput? SchemaSequence => new(TrainerOptions.Channels, TrainerOptions.MaximumLength);

    private protected override TrainingPlan PlanTraining(IDataView input, Options options)
    {
        var resolved = options;
        using (var channel = Environment.Env.Register("Hazy.Sequence." + options.Backbone).Start("Sizing"))
            resolved = SequenceSizing.Resolve(options, input, channel);
        options = resolved;
        var backbone = SequenceBackbones.Create(options);
        var (shape, treatment) = options.NetworkShape();
        return new TrainingPlan("Hazy.Sequence." + options.Backbone, options.WithLayerGroups(backbone.LayerParameterGroups),
            (channels, outputs) => new SequenceNetwork(channels, outputs, options.NumberOfLayers, shape, options.Normalization, options.PreNorm, backbone, treatment),
            Sequence: new SequenceInput(options.Channels, options.MaximumLength,
                (rows, steps) => SequenceNetwork.TrainingBytes(backbone, shape, options.NumberOfLayers, options.Channels, rows, steps)));
    }
}
