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
    /// <summary>Options of the sequence trainer. Defaults follow the reference S4D model (4 × 128, post-norm LayerNorm, dropout 0.1, AdamW 0.01 / 0.01).</summary>
    public sealed class Options : HazyTrainerOptions
    {
        /// <summary>The sequence trainer's defaults, used by these options and by the catalog's short overloads.</summary>
        public static new class Defaults
        {
            /// <summary>Passes over the training data.</summary>
            public const int NumberOfEpochs = HazyTrainerOptions.Defaults.NumberOfEpochs;

            /// <summary>Rows per optimizer step.</summary>
            public const int BatchSize = HazyTrainerOptions.Defaults.BatchSize;

            /// <summary>Peak learning rate: the reference's 1e-2 (the state-space parameters keep their own).</summary>
            public const double LearningRate = 1e-2;

            /// <summary>Weight decay: the reference's 1e-2.</summary>
            public const double WeightDecay = 1e-2;

            /// <summary>Values per time step: 1.</summary>
            public const int Channels = 1;

            /// <summary>The layer type of the blocks: S4D.</summary>
            public const SequenceBackbone Backbone = SequenceBackbone.S4D;

            /// <summary>The model dimension H: 128.</summary>
            public const int ModelDimension = 128;

            /// <summary>The number of blocks: 4.</summary>
            public const int NumberOfLayers = 4;

            /// <summary>Dropout: 0.1.</summary>
            public const double DropoutRate = 0.1;

            /// <summary>The blocks' normalisation: LayerNorm.</summary>
            public const SequenceNormalization Normalization = SequenceNormalization.LayerNorm;
        }

        /// <summary>Sets the reference's learning rate and weight decay.</summary>
        public Options()
        {
            LearningRate = Defaults.LearningRate;
            WeightDecay = Defaults.WeightDecay;
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

        /// <summary>The model dimension H: the encoder's output width and every block's width.</summary>
        public int ModelDimension { get; set; } = Defaults.ModelDimension;

        /// <summary>The number of blocks.</summary>
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

        /// <summary>Options of the S4D backbone.</summary>
        public S4DOptions S4D { get; set; } = new();

        /// <summary>Options of the Transformer backbone.</summary>
        public Attention.TransformerOptions Transformer { get; set; } = new();

        internal override void Check()
        {
            base.Check();
            Require(Channels > 0, nameof(Channels), Channels, "must be positive");
            Require(MaximumLength >= 0, nameof(MaximumLength), MaximumLength, "must not be negative");
            Require(ModelDimension > 0, nameof(ModelDimension), ModelDimension, "must be positive");
            Require(NumberOfLayers > 0, nameof(NumberOfLayers), NumberOfLayers, "must be positive");
            RequireRate(DropoutRate, nameof(DropoutRate));
            Require(MonarchBlocks >= 0, nameof(MonarchBlocks), MonarchBlocks, "must be 0 (dense) or a positive block count");
            // The backbone checks its own options (S4D's state size, the Transformer's heads) as it is built.
            SequenceBackbones.Create(this);
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
        var backbone = SequenceBackbones.Create(options);
        var shape = new SequenceNetworkShape(options.ModelDimension, options.DropoutRate, options.Bidirectional, options.MonarchBlocks);
        return new TrainingPlan("Hazy.Sequence." + options.Backbone, options.WithLayerGroups(backbone.LayerParameterGroups),
            (channels, outputs) => new SequenceNetwork(channels, outputs, options.NumberOfLayers, shape, options.Normalization, options.PreNorm, backbone),
            Sequence: new SequenceInput(options.Channels, options.MaximumLength,
                (rows, steps) => SequenceNetwork.TrainingBytes(backbone, shape, options.NumberOfLayers, options.Channels, rows, steps)));
    }
}
