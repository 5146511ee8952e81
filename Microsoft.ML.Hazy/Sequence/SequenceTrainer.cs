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
public sealed class SequenceTrainer : IEstimator<HazyPredictionTransformer>
{
    /// <summary>Options of the sequence trainer. Defaults follow the reference S4D model (4 × 128, post-norm LayerNorm, dropout 0.1, AdamW 0.01 / 0.01).</summary>
    public sealed class Options : HazyTrainerOptions
    {
        /// <summary>Sets the reference's learning rate and weight decay.</summary>
        public Options()
        {
            LearningRate = 1e-2;
            WeightDecay = 1e-2;
        }

        /// <summary>Values per time step: 1 for a univariate series, C for C channels interleaved time-major.</summary>
        public int Channels = 1;

        /// <summary>
        /// For a variable-size feature column, the most time steps a row may have when the exported model scores it;
        /// 0 takes the longest training row. Ignored for a known-size column (every row has its length).
        /// </summary>
        public int MaximumLength;

        /// <summary>The layer type of the blocks.</summary>
        public SequenceBackbone Backbone = SequenceBackbone.S4D;

        /// <summary>The model dimension H: the encoder's output width and every block's width.</summary>
        public int ModelDimension = 128;

        /// <summary>The number of blocks.</summary>
        public int NumberOfLayers = 4;

        /// <summary>Dropout inside layers and on each residual branch, one mask per row and feature shared across time.</summary>
        public double DropoutRate = 0.1;

        /// <summary>The blocks' normalisation.</summary>
        public SequenceNormalization Normalization = SequenceNormalization.LayerNorm;

        /// <summary>Normalise before each layer (pre-norm, with a final norm) instead of after the residual sum (post-norm).</summary>
        public bool PreNorm;

        /// <summary>Let layers see later steps too (for classification of whole sequences); a bidirectional model cannot stream.</summary>
        public bool Bidirectional;

        /// <summary>
        /// Blocks of each factor when the backbone's projections are Monarch matrices (<see cref="Layers.Monarch.MonarchLinear"/>):
        /// S4D's GLU output projection, the Transformer's query, key, value and output projections and its feed-forward
        /// layers. 0 keeps them dense. Capped at each layer's smaller width. The encoder (C → H) and the decoder stay dense.
        /// </summary>
        public int MonarchBlocks;

        /// <summary>Options of the S4D backbone.</summary>
        public S4DOptions S4D = new();

        /// <summary>Options of the Transformer backbone.</summary>
        public Attention.TransformerOptions Transformer = new();

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

    private readonly HazyEnvironment _env;
    private readonly Options _options;
    private readonly PredictionKind _kind;

    internal SequenceTrainer(HazyEnvironment env, Options options, PredictionKind kind)
    {
        _env = env;
        _options = options ?? throw new ArgumentNullException(nameof(options));
        _kind = kind;
        if (options.Channels <= 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.Channels, "Options.Channels must be positive.");
        if (options.MaximumLength < 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.MaximumLength, "Options.MaximumLength must not be negative.");
        if (options.ModelDimension <= 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.ModelDimension, "Options.ModelDimension must be positive.");
        if (options.NumberOfLayers <= 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.NumberOfLayers, "Options.NumberOfLayers must be positive.");
        if (!(options.DropoutRate >= 0 && options.DropoutRate < 1))
            throw new ArgumentOutOfRangeException(nameof(options), options.DropoutRate, "Options.DropoutRate must be within [0, 1).");
        if (options.MonarchBlocks < 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.MonarchBlocks, "Options.MonarchBlocks must be 0 (dense) or a positive block count.");
        SequenceBackbones.Create(options);
    }

    /// <summary>The task this trainer solves.</summary>
    public PredictionKind Kind => _kind;

    /// <summary>Trains the network and returns the scoring model.</summary>
    public HazyPredictionTransformer Fit(IDataView input)
    {
        var backbone = SequenceBackbones.Create(_options);
        var shape = new SequenceNetworkShape(_options.ModelDimension, _options.DropoutRate, _options.Bidirectional, _options.MonarchBlocks);
        return SupervisedTrainer.Fit(_env, "Hazy.Sequence." + _options.Backbone, _options.WithLayerGroups(backbone.LayerParameterGroups), _kind, input,
            (channels, outputs) => new SequenceNetwork(channels, outputs, _options.NumberOfLayers, shape, _options.Normalization, _options.PreNorm, backbone),
            sequence: new SequenceInput(_options.Channels, _options.MaximumLength,
                (rows, steps) => SequenceNetwork.TrainingBytes(backbone, shape, _options.NumberOfLayers, _options.Channels, rows, steps)));
    }

    /// <summary>The output schema, checked against the input columns, before any training.</summary>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema) =>
        SupervisedTrainer.GetOutputSchema(inputSchema, _options, _kind, new SequenceInput(_options.Channels, _options.MaximumLength));
}
