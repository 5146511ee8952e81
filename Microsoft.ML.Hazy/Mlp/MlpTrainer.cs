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
        if (options.DropoutRate < 0 || options.DropoutRate >= 1)
            throw new ArgumentOutOfRangeException(nameof(options), options.DropoutRate, "Options.DropoutRate must be within [0, 1).");
    }

    /// <summary>The task this trainer solves.</summary>
    public PredictionKind Kind => _kind;

    /// <summary>Trains the network and returns the scoring model.</summary>
    public HazyPredictionTransformer Fit(IDataView input) =>
        SupervisedTrainer.Fit(_env, "Hazy.Mlp", _options, _kind, input,
            (inputSize, outputSize) => new MlpNetwork(inputSize, _options.HiddenLayers, outputSize, _options.Activation, _options.DropoutRate, _options.LayerNorm));

    /// <summary>The output schema, checked against the input columns, before any training.</summary>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema) => SupervisedTrainer.GetOutputSchema(inputSchema, _options, _kind);
}
