using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Heads;
using Microsoft.ML.Hazy.Training;

namespace Microsoft.ML.Hazy.Embedding;

/// <summary>
/// Trains an MLP encoder that maps a <c>Features</c> vector to an embedding of <see cref="Options.EmbeddingSize"/> values, with
/// a supervised baseline objective: softmax cross-entropy of a linear classifier on top of the embedding, which is dropped
/// when the model is exported. The model scores through ONNX Runtime in standard ML.NET and outputs the embedding column.
/// </summary>
/// <remarks>
/// <format type="text/markdown"><![CDATA[
/// ### Input and output columns
/// | Input column | Type |
/// | -- | -- |
/// | `Label` | key (training only) |
/// | `Features` | known-size vector of Single |
///
/// | Output column | Type |
/// | -- | -- |
/// | `Embedding` (<see cref="Options.OutputColumnName"/>) | vector of Single of <see cref="Options.EmbeddingSize"/> values, unit L2 norm when <see cref="Options.Normalize"/> |
///
/// Rows of one class are pulled towards the same direction of the embedding space, so nearest neighbours (cosine similarity
/// of normalised embeddings) tend to share a class. The validation metric is the classifier's accuracy. Scoring reads only
/// the feature column.
/// ]]></format>
/// </remarks>
public sealed class EmbeddingTrainer : IEstimator<HazyPredictionTransformer>
{
    /// <summary>Options of the embedding trainer.</summary>
    public sealed class Options : HazyTrainerOptions
    {
        /// <summary>D, the values per embedding.</summary>
        public int EmbeddingSize { get; set; } = 32;

        /// <summary>Widths of the encoder's hidden layers (ReLU); may be empty for a linear encoder.</summary>
        public int[] HiddenLayers { get; set; } = { 128 };

        /// <summary>Scale each embedding to unit L2 norm (in training, TorchSharp scoring and the ONNX graph alike).</summary>
        public bool Normalize { get; set; } = true;

        /// <summary>The output column.</summary>
        public string OutputColumnName { get; set; } = DefaultColumnNames.Embedding;
    }

    private readonly HazyEnvironment _env;
    private readonly Options _options;

    internal EmbeddingTrainer(HazyEnvironment env, Options options)
    {
        _env = env;
        _options = options ?? throw new ArgumentNullException(nameof(options));
        if (options.EmbeddingSize <= 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.EmbeddingSize, "Options.EmbeddingSize must be positive.");
        if (options.HiddenLayers is null || options.HiddenLayers.Any(w => w <= 0))
            throw new ArgumentOutOfRangeException(nameof(options), "Options.HiddenLayers must list positive widths (it may be empty for a linear encoder).");
        ArgumentException.ThrowIfNullOrWhiteSpace(options.OutputColumnName, nameof(options));
    }

    private EmbeddingHead Head => new(_options.EmbeddingSize, _options.Normalize, _options.OutputColumnName);

    /// <summary>Trains the encoder and returns the model that outputs the embedding column.</summary>
    public HazyPredictionTransformer Fit(IDataView input)
    {
        var head = Head;
        int inputSize = 0;
        var hidden = _options.HiddenLayers.ToArray();
        return SupervisedTrainer.Fit(_env, "Hazy.Embedding", _options, OutputHead.For(PredictionKind.MulticlassClassification), input,
            (features, classes) => new EmbeddingClassifier(inputSize = features, hidden, head, classes),
            export: trained =>
            {
                var encoder = ((EmbeddingClassifier)trained).CopyEncoder(inputSize, hidden);
                trained.Dispose();
                return (encoder, head);
            });
    }

    /// <summary>The output schema, checked against the input columns (a key label, a known-size feature vector), before any training.</summary>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema) =>
        SupervisedTrainer.GetOutputSchema(inputSchema, _options, OutputHead.For(PredictionKind.MulticlassClassification), scoringHead: Head);
}
