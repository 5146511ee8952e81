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
public sealed class CnnTrainer : HazyTrainer<CnnTrainer.Options>
{
    /// <summary>Options of the CNN trainer.</summary>
    public sealed class Options : HazyTrainerOptions
    {
        /// <summary>The CNN trainer's defaults, used by these options and by the catalog's short overloads.</summary>
        public static new class Defaults
        {
            /// <summary>Passes over the training data.</summary>
            public const int NumberOfEpochs = HazyTrainerOptions.Defaults.NumberOfEpochs;

            /// <summary>Rows per optimizer step.</summary>
            public const int BatchSize = HazyTrainerOptions.Defaults.BatchSize;

            /// <summary>Peak learning rate: 2e-3 (the base options' 1e-3 trains the CNN more slowly).</summary>
            public const double LearningRate = 2e-3;

            /// <summary>Channels of the image: 1.</summary>
            public const int Channels = 1;

            /// <summary>Output channels of the convolution blocks: 16 and 32 (a new array on every read).</summary>
            public static int[] Filters => new[] { 16, 32 };

            /// <summary>Side of the convolution kernels: 3.</summary>
            public const int KernelSize = 3;

            /// <summary>Stride of the convolutions: 2.</summary>
            public const int Stride = 2;

            /// <summary>Zero padding of the convolutions: 1.</summary>
            public const int Padding = 1;

            /// <summary>Spatial dropout after each block: 0.25.</summary>
            public const double DropoutRate = 0.25;
        }

        /// <summary>The CNN's defaults; the learning rate is 2e-3 (the base options' 1e-3 trains it more slowly).</summary>
        public Options() => LearningRate = Defaults.LearningRate;

        /// <summary>Channels C of the image.</summary>
        public int Channels { get; set; } = Defaults.Channels;

        /// <summary>Height H of the image in pixels; required.</summary>
        public int Height { get; set; }

        /// <summary>Width W of the image in pixels; required.</summary>
        public int Width { get; set; }

        /// <summary>Output channels of each convolution block, in order; one block per entry.</summary>
        public int[] Filters { get; set; } = Defaults.Filters;

        /// <summary>Side of the square convolution kernels.</summary>
        public int KernelSize { get; set; } = Defaults.KernelSize;

        /// <summary>Stride of the convolutions (2 halves the feature map in each block).</summary>
        public int Stride { get; set; } = Defaults.Stride;

        /// <summary>Zero padding on each side of the convolutions' input.</summary>
        public int Padding { get; set; } = Defaults.Padding;

        /// <summary>Spatial dropout (whole feature maps, Dropout2d) after each block; identity when scoring.</summary>
        public double DropoutRate { get; set; } = Defaults.DropoutRate;

        internal override void Check()
        {
            base.Check();
            Require(Channels > 0, nameof(Channels), Channels, "must be positive");
            Require(Height > 0, nameof(Height), Height, "must be positive");
            Require(Width > 0, nameof(Width), Width, "must be positive");
            Require(Filters is { Length: > 0 } && Filters.All(f => f > 0), nameof(Filters), Filters is null ? null : $"[{string.Join(", ", Filters)}]",
                "must list at least one positive channel count");
            Require(KernelSize > 0, nameof(KernelSize), KernelSize, "must be positive");
            Require(Stride > 0, nameof(Stride), Stride, "must be positive");
            Require(Padding >= 0, nameof(Padding), Padding, "must be 0 or positive");
            RequireRate(DropoutRate, nameof(DropoutRate));
            if ((long)Channels * Height * Width > int.MaxValue)
                throw new ArgumentOutOfRangeException(nameof(Channels), "Options.Channels·Height·Width is too large.");
            var (h, w) = CnnNetwork.OutputSide(Height, Width, Filters!.Length, KernelSize, Stride, Padding);
            if (h <= 0 || w <= 0)
                throw new ArgumentOutOfRangeException(nameof(Filters),
                    $"A {Height}×{Width} image is too small for {Filters.Length} convolution(s) of kernel {KernelSize}, stride {Stride} and padding {Padding}; use fewer Filters, a smaller KernelSize or Stride, or more Padding.");
        }
    }

    internal CnnTrainer(HazyEnvironment env, Options options, PredictionKind kind)
        : base(env, "Hazy.Cnn", options, kind)
    {
    }

    private protected override TrainingPlan PlanTraining(IDataView input, Options o)
    {
        int size = o.Channels * o.Height * o.Width;
        var features = SchemaChecks.FloatVectorColumn(input.Schema, o.FeatureColumnName, requireKnownSize: true);
        int actual = ((VectorDataViewType)features.Type).Size;
        if (actual != size)
            throw new ArgumentOutOfRangeException(nameof(input),
                $"Column '{o.FeatureColumnName}' has {actual} values per row; expected Channels·Height·Width = {o.Channels}·{o.Height}·{o.Width} = {size}.");
        return new TrainingPlan("Hazy.Cnn", o,
            (_, outputSize) => new CnnNetwork(o.Channels, o.Height, o.Width, o.Filters, o.KernelSize, o.Stride, o.Padding, o.DropoutRate, outputSize));
    }
}
