using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Heads;
using Microsoft.ML.Hazy.Onnx;
using Microsoft.ML.Hazy.Training;

namespace Microsoft.ML.Hazy.Cnn;

/// <summary>
/// Trains a small convolutional network on image-shaped <c>Features</c> vectors with TorchSharp, for multiclass or
/// binary classification or regression, and returns a model that scores through ONNX Runtime in standard ML.NET.
/// </summary>
/// <remarks>
/// <format type="text/markdown"><![CDATA[
/// ### Input and output columns
/// | Input column | Type |
/// | -- | -- |
/// | `Label` | key (multiclass), Boolean (binary) or Single (regression) |
/// | `Features` | vector of C·H·W Single: an image, channel after channel, each row by row (the usual flattening of C×H×W) |
///
/// | Output column | Type | Task |
/// | -- | -- | -- |
/// | `Score` | vector of Single (class probabilities), or Single | all |
/// | `Probability` | Single | binary |
/// | `PredictedLabel` | key with the label's values, or Boolean | classification |
///
/// The network reshapes each row to C×H×W, applies [Conv2d → BatchNorm2d → ReLU → Dropout2d] once per entry of
/// <see cref="Options.Filters"/>, flattens and ends in a linear layer. Training is deterministic for a given seed
/// (<see cref="HazyTrainerOptions.Seed"/>, or the MLContext's), runs on the GPU given by <c>MLContext.GpuDeviceId</c>
/// when a CUDA runtime is present, reports each epoch to <c>MLContext.Log</c> and can be cancelled through
/// <see cref="HazyTrainerOptions.CancellationToken"/>.
/// ]]></format>
/// </remarks>
public sealed class CnnTrainer : IEstimator<HazyPredictionTransformer>
{
    /// <summary>Options of the CNN trainer.</summary>
    public sealed class Options : HazyTrainerOptions
    {
        /// <summary>The CNN's defaults; the learning rate is 2e-3 (the base options' 1e-3 trains it more slowly).</summary>
        public Options() => LearningRate = 2e-3;

        /// <summary>Channels C of the image.</summary>
        public int Channels = 1;

        /// <summary>Height H of the image in pixels; required.</summary>
        public int Height;

        /// <summary>Width W of the image in pixels; required.</summary>
        public int Width;

        /// <summary>Output channels of each convolution block, in order; one block per entry.</summary>
        public int[] Filters = { 16, 32 };

        /// <summary>Side of the square convolution kernels.</summary>
        public int KernelSize = 3;

        /// <summary>Stride of the convolutions (2 halves the feature map in each block).</summary>
        public int Stride = 2;

        /// <summary>Zero padding on each side of the convolutions' input.</summary>
        public int Padding = 1;

        /// <summary>Spatial dropout (whole feature maps, Dropout2d) after each block; identity when scoring.</summary>
        public double DropoutRate = 0.25;
    }

    private readonly HazyEnvironment _env;
    private readonly Options _options;
    private readonly PredictionKind _kind;

    internal CnnTrainer(HazyEnvironment env, Options options, PredictionKind kind)
    {
        _env = env;
        _options = options ?? throw new ArgumentNullException(nameof(options));
        _kind = kind;
        Positive(options.Channels, "Channels");
        Positive(options.Height, "Height");
        Positive(options.Width, "Width");
        if (options.Filters is null || options.Filters.Length == 0 || options.Filters.Any(f => f <= 0))
            throw new ArgumentOutOfRangeException(nameof(options), "Options.Filters must list at least one positive channel count.");
        Positive(options.KernelSize, "KernelSize");
        Positive(options.Stride, "Stride");
        if (options.Padding < 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.Padding, "Options.Padding must be 0 or positive.");
        if (!(options.DropoutRate >= 0 && options.DropoutRate < 1))
            throw new ArgumentOutOfRangeException(nameof(options), options.DropoutRate, "Options.DropoutRate must be within [0, 1).");
        if ((long)options.Channels * options.Height * options.Width > int.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(options), "Options.Channels·Height·Width is too large.");
        var (h, w) = CnnNetwork.OutputSide(options.Height, options.Width, options.Filters.Length, options.KernelSize, options.Stride, options.Padding);
        if (h <= 0 || w <= 0)
            throw new ArgumentOutOfRangeException(nameof(options),
                $"A {options.Height}×{options.Width} image is too small for {options.Filters.Length} convolution(s) of kernel {options.KernelSize}, stride {options.Stride} and padding {options.Padding}; use fewer Filters, a smaller KernelSize or Stride, or more Padding.");

        static void Positive(int value, string name)
        {
            if (value <= 0)
                throw new ArgumentOutOfRangeException("options", value, $"Options.{name} must be positive.");
        }
    }

    /// <summary>The task this trainer solves.</summary>
    public PredictionKind Kind => _kind;

    /// <summary>Trains the network and returns the scoring model.</summary>
    public HazyPredictionTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var o = _options;
        int size = o.Channels * o.Height * o.Width;
        var features = SchemaChecks.FloatVectorColumn(input.Schema, o.FeatureColumnName, requireKnownSize: true);
        int actual = ((VectorDataViewType)features.Type).Size;
        if (actual != size)
            throw new ArgumentOutOfRangeException(nameof(input),
                $"Column '{o.FeatureColumnName}' has {actual} values per row; expected Channels·Height·Width = {o.Channels}·{o.Height}·{o.Width} = {size}.");
        return SupervisedTrainer.Fit(_env, "Hazy.Cnn", o, _kind, input,
            (_, outputSize) => new CnnNetwork(o.Channels, o.Height, o.Width, o.Filters, o.KernelSize, o.Stride, o.Padding, o.DropoutRate, outputSize));
    }

    /// <summary>The output schema, checked against the input columns, before any training.</summary>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema) => SupervisedTrainer.GetOutputSchema(inputSchema, _options, _kind);
}
