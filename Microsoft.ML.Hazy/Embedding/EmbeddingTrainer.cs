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
public sealed class EmbeddingTrainer : HazyTrainer<EmbeddingTrainer.Options>
{
    /// <summary>Options of the embedding trainer.</summary>
    public sealed class Options : HazyTrainerOptions
    {
        /// <summary>The embedding trainer's defaults, used by these options and by the catalog's short overload.</summary>
        public static new class Defaults
        {
            /// <summary>D, the values per embedding: 32.</summary>
            public const int EmbeddingSize = 32;

            /// <summary>Widths of the encoder's hidden layers: 128 (a new array on every read).</summary>
            public static int[] HiddenLayers => new[] { 128 };

            /// <summary>Embeddings have unit L2 norm.</summary>
            public const bool Normalize = true;
        }

        /// <summary>D, the values per embedding.</summary>
        public int EmbeddingSize { get; set; } = Defaults.EmbeddingSize;

        /// <summary>Widths of the encoder's hidden layers (ReLU); may be empty for a linear encoder.</summary>
        public int[] HiddenLayers { get; set; } = Defaults.HiddenLayers;

        /// <summary>Scale each embedding to unit L2 norm (in training, TorchSharp scoring and the ONNX graph alike).</summary>
        public bool Normalize { get; set; } = Defaults.Normalize;

        /// <summary>The output column.</summary>
        public string OutputColumnName { get; set; } = DefaultColumnNames.Embedding;

        internal override void Check()
        {
            base.Check();
            Require(EmbeddingSize > 0, nameof(EmbeddingSize), EmbeddingSize, "must be positive");
            Require(HiddenLayers is not null && HiddenLayers.All(w => w > 0), nameof(HiddenLayers), HiddenLayers is null ? null : $"[{string.Join(", ", HiddenLayers)}]",
                "must list positive widths (it may be empty for a linear encoder)");
            Require(!string.IsNullOrWhiteSpace(OutputColumnName), nameof(OutputColumnName), OutputColumnName, "must name a column");
        }
    }

    internal EmbeddingTrainer(HazyEnvironment env, Options options)
        : base(env, "Hazy.Embedding", options, PredictionKind.Embedding)
    {
    }

    /// <summary>Trained as a classifier of the key label; the classifier is dropped at export.</summary>
    private protected override OutputHead TrainingHead => OutputHead.For(PredictionKind.MulticlassClassification);

    private protected override OutputHead ScoringHead => Head(TrainerOptions);

    private static EmbeddingHead Head(Options options) => new(options.EmbeddingSize, options.Normalize, options.OutputColumnName);

    private protected override TrainingPlan PlanTraining(IDataView input, Options options)
    {
        var head = Head(options);
        int inputSize = 0;
        var hidden = options.HiddenLayers.ToArray();
        return new TrainingPlan("Hazy.Embedding", options,
            (features, classes) => new EmbeddingClassifier(inputSize = features, hidden, head, classes),
            Export: trained =>
            {
                var encoder = ((EmbeddingClassifier)trained).CopyEncoder(inputSize, hidden);
                trained.Dispose();
                return (encoder, head);
            });
    }
}
