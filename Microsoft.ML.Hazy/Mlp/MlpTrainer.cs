using Microsoft.ML.Hazy.Heads;
using Microsoft.ML.Hazy.Onnx;
using Microsoft.ML.Hazy.Training;

namespace Microsoft.ML.Hazy.Mlp;

/// <summary>
/// Trains a multilayer perceptron on a <c>Features</c> vector with TorchSharp, for multiclass or binary
/// classification or regression, and returns a model that scores through ONNX Runtime in standard ML.NET.
/// </summary>
/// <remarks>
/// <format type="text/markdown"><![CDATA[
/// ### Input and output columns
/// | Input column | Type |
/// | -- | -- |
/// | `Label` | key (multiclass), Boolean (binary) or Single (regression) |
/// | `Features` | known-size vector of Single |
///
/// | Output column | Type | Task |
/// | -- | -- | -- |
/// | `Score` | vector of Single (class probabilities), or Single | all |
/// | `Probability` | Single | binary |
/// | `PredictedLabel` | key with the label's values, or Boolean | classification |
///
/// Training is deterministic for a given seed (<see cref="HazyTrainerOptions.Seed"/>, or the MLContext's),
/// runs on the GPU given by <c>MLContext.GpuDeviceId</c> when a CUDA runtime is present, reports each epoch
/// to <c>MLContext.Log</c> and can be cancelled through <see cref="HazyTrainerOptions.CancellationToken"/>.
/// ]]></format>
/// </remarks>
public sealed class MlpTrainer : IEstimator<HazyPredictionTransformer>
{
    /// <summary>Options of the MLP trainer.</summary>
    public sealed class Options : HazyTrainerOptions
    {
        /// <summary>Widths of the hidden layers.</summary>
        public int[] HiddenLayers = { 256, 128 };

        /// <summary>The hidden layers' activation.</summary>
        public MlpActivation Activation = MlpActivation.Relu;

        /// <summary>Dropout after each hidden layer (identity when scoring).</summary>
        public double DropoutRate = 0.1;

        /// <summary>Normalise each hidden layer's output with LayerNorm.</summary>
        public bool LayerNorm;

        /// <summary>
        /// Blocks of each factor when the hidden layers are Monarch matrices (<see cref="Layers.Monarch.MonarchLinear"/>);
        /// 0 keeps them dense. Capped at each layer's smaller width. The output head stays dense.
        /// </summary>
        public int MonarchBlocks;

        /// <summary>
        /// Reverse sparsification (sparse-to-dense training): with <see cref="MonarchBlocks"/> &gt; 0 and a value in (0, 1),
        /// train the Monarch layers for this fraction of <see cref="HazyTrainerOptions.NumberOfEpochs"/>, replace each by
        /// the dense layer computing exactly the same function, and train the rest of the epochs dense. The learning-rate
        /// schedule runs on over the switch, and the optimizer state carries over for the parameters that keep their shape
        /// (biases, norms, head); the densified weights start with fresh moments. 0 never densifies.
        /// </summary>
        public double DensifyAfterFraction;
    }

    private readonly HazyEnvironment _env;
    private readonly Options _options;
    private readonly PredictionKind _kind;

    internal MlpTrainer(HazyEnvironment env, Options options, PredictionKind kind)
    {
        _env = env;
        _options = options ?? throw new ArgumentNullException(nameof(options));
        _kind = kind;
        if (options.HiddenLayers is null || options.HiddenLayers.Any(w => w <= 0))
            throw new ArgumentOutOfRangeException(nameof(options), "Options.HiddenLayers must list positive widths (it may be empty for a linear model).");
        if (!(options.DropoutRate >= 0 && options.DropoutRate < 1))
            throw new ArgumentOutOfRangeException(nameof(options), options.DropoutRate, "Options.DropoutRate must be within [0, 1).");
        if (options.MonarchBlocks < 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.MonarchBlocks, "Options.MonarchBlocks must be 0 (dense) or a positive block count.");
        if (options.DensifyAfterFraction < 0 || options.DensifyAfterFraction >= 1)
            throw new ArgumentOutOfRangeException(nameof(options), options.DensifyAfterFraction, "Options.DensifyAfterFraction must be within [0, 1).");
        if (options.DensifyAfterFraction > 0 && options.MonarchBlocks == 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.DensifyAfterFraction, "Options.DensifyAfterFraction needs Options.MonarchBlocks > 0: only Monarch layers are densified.");
    }

    /// <summary>The task this trainer solves.</summary>
    public PredictionKind Kind => _kind;

    /// <summary>Trains the network and returns the scoring model.</summary>
    public HazyPredictionTransformer Fit(IDataView input)
    {
        NetworkSwitch? densify = null;
        if (_options.DensifyAfterFraction > 0)
        {
            int after = Math.Clamp((int)Math.Round(_options.DensifyAfterFraction * _options.NumberOfEpochs), 1, Math.Max(1, _options.NumberOfEpochs - 1));
            densify = new NetworkSwitch(after, n => ((MlpNetwork)n).Densify(), "replaced the Monarch layers by their exact dense equivalents");
        }
        return SupervisedTrainer.Fit(_env, "Hazy.Mlp", _options, _kind, input,
            (inputSize, outputSize) => new MlpNetwork(inputSize, _options.HiddenLayers, outputSize, _options.Activation, _options.DropoutRate, _options.LayerNorm, _options.MonarchBlocks),
            densify);
    }

    /// <summary>The output schema, checked against the input columns, before any training.</summary>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema) => SupervisedTrainer.GetOutputSchema(inputSchema, _options, _kind);
}
