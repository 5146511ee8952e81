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
public sealed class MonarchFineTuneTrainer : IEstimator<HazyPredictionTransformer>
{
    /// <summary>Options of dense-to-sparse fine-tuning; the training options apply to the fine-tuning run.</summary>
    public sealed class Options : HazyTrainerOptions
    {
        /// <summary>Creates options with fine-tuning defaults: 2 epochs at learning rate 5e-4.</summary>
        public Options()
        {
            NumberOfEpochs = 2;
            LearningRate = 5e-4;
        }

        /// <summary>Blocks of each Monarch factor of the projected hidden layers (capped at each layer's smaller width).</summary>
        public int MonarchBlocks = 4;
    }

    private readonly HazyEnvironment _env;
    private readonly HazyPredictionTransformer _model;
    private readonly Options _options;
    private readonly PredictionKind _kind;

    internal MonarchFineTuneTrainer(HazyEnvironment env, HazyPredictionTransformer model, Options options, PredictionKind kind)
    {
        _env = env;
        _model = model ?? throw new ArgumentNullException(nameof(model));
        _options = options ?? throw new ArgumentNullException(nameof(options));
        _kind = kind;
        if (model.Kind != kind)
            throw new ArgumentException($"The model solves {model.Kind}; this catalog fine-tunes {kind} models.", nameof(model));
        if (model.Network is not MlpNetwork)
            throw new NotSupportedException($"MonarchFineTune projects Hazy MLP models; the model's network is a {model.Network.GetType().Name}.");
        if (options.MonarchBlocks <= 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.MonarchBlocks, "Options.MonarchBlocks must be positive.");
    }

    /// <summary>Projects the model's hidden layers on Monarch matrices and fine-tunes on <paramref name="input"/>.</summary>
    public HazyPredictionTransformer Fit(IDataView input)
    {
        var source = (MlpNetwork)_model.Network;
        return SupervisedTrainer.Fit(_env, "Hazy.MonarchFineTune", _options, _kind, input, (inputSize, outputSize) =>
        {
            if (inputSize != source.InputSize || outputSize != source.OutputSize)
                throw new ArgumentException(
                    $"The data has {inputSize} features and {outputSize} output(s); the model was trained with {source.InputSize} and {source.OutputSize}.", nameof(input));
            return source.ToMonarch(_options.MonarchBlocks);
        }, pretrained: true);
    }

    /// <summary>The output schema, checked against the input columns, before any training.</summary>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema) => SupervisedTrainer.GetOutputSchema(inputSchema, _options, _kind);
}
