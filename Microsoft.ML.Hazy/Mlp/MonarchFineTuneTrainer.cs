using Microsoft.ML.Hazy.Heads;
using Microsoft.ML.Hazy.Onnx;
using Microsoft.ML.Hazy.Training;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Mlp;

/// <summary>
/// Dense-to-sparse fine-tuning (Dao et al. 2022, §3.5–3.6 of the research notes): takes a trained Hazy MLP,
/// replaces each dense hidden layer by its optimal Monarch projection (the closest Monarch matrix in Frobenius
/// norm, one truncated SVD per block) and fine-tunes the result for a few epochs. The input model is not changed.
/// </summary>
/// <remarks>
/// <format type="text/markdown"><![CDATA[
/// ### Input and output columns
/// As for the MLP trainer: `Label` and `Features` in; `Score`, `PredictedLabel` (classification) and
/// `Probability` (binary) out. The label and features must match the model's (same width, same classes).
///
/// ### Example
/// ```csharp
/// var dense = mlContext.MulticlassClassification.Trainers.HazyMlp(hiddenLayers: new[] { 256, 128 }).Fit(train);
/// var sparse = mlContext.Hazy().MulticlassClassification
///     .MonarchFineTune(dense, monarchBlocks: 4, numberOfEpochs: 2)
///     .Fit(train);                                   // hidden layers now hold ~1/2 of the weights (2/nblocks)
/// var metrics = mlContext.MulticlassClassification.Evaluate(sparse.Transform(test));
/// ```
/// ]]></format>
/// </remarks>
public sealed class MonarchFineTuneTrainer : HazyTrainer<MonarchFineTuneTrainer.Options>
{
    /// <summary>Options of dense-to-sparse fine-tuning; the training options apply to the fine-tuning run.</summary>
    public sealed class Options : HazyTrainerOptions
    {
        /// <summary>The fine-tuning defaults, used by these options and by the catalog's short overload.</summary>
        public static new class Defaults
        {
            /// <summary>Fine-tuning epochs: 2.</summary>
            public const int NumberOfEpochs = 2;

            /// <summary>Peak fine-tuning learning rate: 5e-4.</summary>
            public const double LearningRate = 5e-4;

            /// <summary>Rows per optimizer step.</summary>
            public const int BatchSize = HazyTrainerOptions.Defaults.BatchSize;

            /// <summary>Blocks of each Monarch factor: 4.</summary>
            public const int MonarchBlocks = 4;
        }

        /// <summary>Creates options with fine-tuning defaults: 2 epochs at learning rate 5e-4.</summary>
        public Options()
        {
            NumberOfEpochs = Defaults.NumberOfEpochs;
            LearningRate = Defaults.LearningRate;
        }

        /// <summary>Blocks of each Monarch factor of the projected hidden layers (capped at each layer's smaller width).</summary>
        public int MonarchBlocks { get; set; } = Defaults.MonarchBlocks;

        internal override void Check()
        {
            base.Check();
            Require(MonarchBlocks > 0, nameof(MonarchBlocks), MonarchBlocks, "must be positive");
        }
    }

    private readonly HazyPredictionTransformer _model;

    internal MonarchFineTuneTrainer(HazyEnvironment env, HazyPredictionTransformer model, Options options, PredictionKind kind)
        : base(env, "Hazy.MonarchFineTune", options, kind)
    {
        _model = model ?? throw new ArgumentNullException(nameof(model));
        if (model.Kind != kind)
            throw new ArgumentException($"The model solves {model.Kind}; this catalog fine-tunes {kind} models.", nameof(model));
        if (model.Network is not MlpNetwork)
            throw new NotSupportedException($"MonarchFineTune projects Hazy MLP models; the model's network is a {model.Network.GetType().Name}.");
    }

    /// <summary>Projects the model's hidden layers on Monarch matrices and fine-tunes on the data given to <c>Fit</c>.</summary>
    private protected override TrainingPlan PlanTraining(IDataView input, Options options)
    {
        var source = (MlpNetwork)_model.Network;
        return new TrainingPlan("Hazy.MonarchFineTune", options, (inputSize, outputSize) =>
        {
            if (inputSize != source.InputSize || outputSize != source.OutputSize)
                throw new ArgumentException(
                    $"The data has {inputSize} features and {outputSize} output(s); the model was trained with {source.InputSize} and {source.OutputSize}.", nameof(input));
            return source.ToMonarch(options.MonarchBlocks);
        }, Pretrained: true);
    }
}
