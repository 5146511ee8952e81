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
public sealed class MlpTrainer : HazyTrainer<MlpTrainer.Options>
{
    /// <summary>Options of the MLP trainer.</summary>
    public sealed class Options : HazyTrainerOptions
    {
        /// <summary>The MLP trainer's defaults, used by these options and by the catalog's short overloads.</summary>
        public static new class Defaults
        {
            /// <summary>Passes over the training data.</summary>
            public const int NumberOfEpochs = HazyTrainerOptions.Defaults.NumberOfEpochs;

            /// <summary>Rows per optimizer step.</summary>
            public const int BatchSize = HazyTrainerOptions.Defaults.BatchSize;

            /// <summary>Peak learning rate.</summary>
            public const double LearningRate = HazyTrainerOptions.Defaults.LearningRate;

            /// <summary>Widths of the hidden layers: 256 and 128 (a new array on every read).</summary>
            public static int[] HiddenLayers => new[] { 256, 128 };

            /// <summary>The hidden layers' activation: ReLU.</summary>
            public const MlpActivation Activation = MlpActivation.Relu;

            /// <summary>Dropout after each hidden layer: 0.1.</summary>
            public const double DropoutRate = 0.1;
        }

        /// <summary>Widths of the hidden layers.</summary>
        public int[] HiddenLayers { get; set; } = Defaults.HiddenLayers;

        /// <summary>The hidden layers' activation.</summary>
        public MlpActivation Activation { get; set; } = Defaults.Activation;

        /// <summary>Dropout after each hidden layer (identity when scoring).</summary>
        public double DropoutRate { get; set; } = Defaults.DropoutRate;

        /// <summary>Normalise each hidden layer's output with LayerNorm.</summary>
        public bool LayerNorm { get; set; }

        /// <summary>
        /// Blocks of each factor when the hidden layers are Monarch matrices (<see cref="Layers.Monarch.MonarchLinear"/>);
        /// 0 keeps them dense. Capped at each layer's smaller width. The output head stays dense.
        /// </summary>
        public int MonarchBlocks { get; set; }

        /// <summary>
        /// Reverse sparsification (sparse-to-dense training): with <see cref="MonarchBlocks"/> &gt; 0 and a value in (0, 1),
        /// train the Monarch layers for this fraction of <see cref="HazyTrainerOptions.NumberOfEpochs"/>, replace each by
        /// the dense layer computing exactly the same function, and train the rest of the epochs dense. The learning-rate
        /// schedule runs on over the switch, and the optimizer state carries over for the parameters that keep their shape
        /// (biases, norms, head); the densified weights start with fresh moments. 0 never densifies.
        /// </summary>
        public double DensifyAfterFraction { get; set; }

        internal override void Check()
        {
            base.Check();
            Require(HiddenLayers is not null && HiddenLayers.All(w => w > 0), nameof(HiddenLayers), HiddenLayers is null ? null : $"[{string.Join(", ", HiddenLayers)}]",
                "must list positive widths (it may be empty for a linear model)");
            Require(Enum.IsDefined(Activation), nameof(Activation), Activation, "is not an MlpActivation");
            RequireRate(DropoutRate, nameof(DropoutRate));
            Require(MonarchBlocks >= 0, nameof(MonarchBlocks), MonarchBlocks, "must be 0 (dense) or a positive block count");
            RequireRate(DensifyAfterFraction, nameof(DensifyAfterFraction));
            Require(DensifyAfterFraction == 0 || MonarchBlocks > 0, nameof(DensifyAfterFraction), DensifyAfterFraction,
                "needs Options.MonarchBlocks > 0: only Monarch layers are densified");
        }
    }

    internal MlpTrainer(HazyEnvironment env, Options options, PredictionKind kind)
        : base(env, "Hazy.Mlp", options, kind)
    {
    }

    private protected override TrainingPlan PlanTraining(IDataView input, Options options)
    {
        NetworkSwitch? densify = null;
        if (options.DensifyAfterFraction > 0)
        {
            int after = Math.Clamp((int)Math.Round(options.DensifyAfterFraction * options.NumberOfEpochs), 1, Math.Max(1, options.NumberOfEpochs - 1));
            densify = new NetworkSwitch(after, n => ((MlpNetwork)n).Densify(), "replaced the Monarch layers by their exact dense equivalents");
        }
        return new TrainingPlan("Hazy.Mlp", options,
            (inputSize, outputSize) => new MlpNetwork(inputSize, options.HiddenLayers, outputSize, options.Activation, options.DropoutRate, options.LayerNorm, options.MonarchBlocks),
            densify);
    }
}
