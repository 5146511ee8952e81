using Microsoft.ML.Hazy.Onnx;
using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Heads;
using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Training;

namespace Microsoft.ML.Hazy.Persistence;

/// <summary>
/// Trains a Hazy model further on new data: a copy of its network (same architecture, same weights) is trained with the
/// shared training loop and exported as a new model; the given model is not changed. The model may come from a trainer in
/// this process or from <c>mlContext.Hazy().LoadModel</c> on a file saved with <c>includeWeights: true</c>.
/// </summary>
/// <remarks>
/// <format type="text/markdown"><![CDATA[
/// ### Input and output columns
/// As for the trainer that made the model: the label and the feature column in (same feature width, or the same channels for
/// a sequence model, and the same classes); `Score`, `PredictedLabel` (classification) and `Probability` (binary) out.
///
/// ### Example
/// ```csharp
/// mlContext.Model.SaveAtomically(model, train.Schema, "model.zip", includeWeights: true);
/// // ... later, in another process:
/// var loaded = mlContext.Hazy().LoadModel("model.zip", out var schema);
/// var refined = mlContext.Hazy().ContinueTraining(loaded, new ContinuedTrainingEstimator.Options { NumberOfEpochs = 3 }).Fit(moreData);
/// ```
/// ]]></format>
/// The run starts a fresh optimizer (its state is not saved) and a fresh learning-rate schedule; the weights are not
/// re-initialised. A sequence model's backbone parameter groups (S4D's state-space learning rate) are not carried over:
/// set <see cref="HazyTrainerOptions.ParameterGroups"/> to give them their own learning rate again.
/// </remarks>
public sealed class ContinuedTrainingEstimator : IEstimator<HazyPredictionTransformer>
{
    /// <summary>Options of continued training; the training options apply to the new run.</summary>
    public sealed class Options : HazyTrainerOptions
    {
        /// <summary>Creates options with fine-tuning defaults: 2 epochs at learning rate 5e-4.</summary>
        public Options()
        {
            NumberOfEpochs = 2;
            LearningRate = 5e-4;
        }
    }

    private readonly HazyEnvironment _env;
    private readonly HazyPredictionTransformer _model;
    private readonly Options _options;

    private ContinuedTrainingEstimator(HazyEnvironment env, HazyPredictionTransformer model, Options options)
    {
        _env = env;
        _model = model;
        _options = options;
    }

    /// <summary>The estimator for the one Hazy model in <paramref name="model"/>; null options read the model's feature column.</summary>
    internal static ContinuedTrainingEstimator Create(HazyEnvironment env, ITransformer model, Options? options)
    {
        var hazy = HazyModelOf(model);
        return new ContinuedTrainingEstimator(env, hazy, options ?? new Options { FeatureColumnName = hazy.FeatureColumnName });
    }

    /// <summary>Copies the model's network and trains the copy on <paramref name="input"/>.</summary>
    /// <exception cref="ArgumentException">The data's feature width or classes differ from the model's.</exception>
    public HazyPredictionTransformer Fit(IDataView input)
    {
        var source = _model.Network;
        var layout = _model.Sequence;
        int expectedInputs = layout?.Channels ?? (int)_model.RowShape.Aggregate(1L, (a, b) => a * b);
        int expectedOutputs = _model.Labels?.Count ?? 1;
        return SupervisedTrainer.Fit(_env, "Hazy.ContinueTraining", _options, _model.Kind, input, (inputSize, outputSize) =>
        {
            if (inputSize != expectedInputs || outputSize != expectedOutputs)
                throw new ArgumentException(
                    $"The data has {inputSize} {(layout is null ? "features" : "channels")} and {outputSize} output(s); the model was trained with {expectedInputs} and {expectedOutputs}.",
                    nameof(input));
            return NetworkRegistry.Clone(source);
        }, sequence: Sequence(layout), pretrained: true);
    }

    /// <summary>The output schema, checked against the input columns, before any training.</summary>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema) => SupervisedTrainer.GetOutputSchema(inputSchema, _options, _model.Kind, Sequence(_model.Sequence));

    /// <summary>The model's sequence input: its channels, and for a variable-length model the longest sequence it was exported for.</summary>
    private static SequenceInput? Sequence(SequenceLayout? layout) =>
        layout is null ? null : new SequenceInput(layout.Channels, layout.IsVariableLength ? layout.ExportSteps : 0);

    private static HazyPredictionTransformer HazyModelOf(ITransformer model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var found = model switch
        {
            HazyPredictionTransformer h => h,
            TransformerChain<ITransformer> chain => chain.OfType<HazyPredictionTransformer>().SingleOrDefault(),
            _ => null,
        };
        return found ?? throw new NotSupportedException(
            $"The model {model.GetType().Name} holds no TorchSharp network to train on: continued training needs a Hazy model trained in this process, " +
            "or one loaded with mlContext.Hazy().LoadModel from a file saved with its weights (mlContext.Model.SaveAtomically(model, schema, path, includeWeights: true)).");
    }
}
