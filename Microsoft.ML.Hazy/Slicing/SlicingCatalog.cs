using Microsoft.ML.Hazy;
using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Slicing;
using Microsoft.ML.Hazy.Training;

namespace Microsoft.ML
{
    /// <summary>Hazy slice discovery as an extension of ML.NET's transforms catalog.</summary>
    public static class HazySlicingCatalogExtensions
    {
        /// <summary>Domino slice discovery: an error-aware mixture over embeddings, labels and predictions.</summary>
        /// <param name="catalog">The transforms catalog.</param>
        /// <param name="embeddingColumnName">The embedding column: a known-size vector of Single.</param>
        /// <param name="labelColumnName">The label column: a key, Boolean or numeric.</param>
        /// <param name="predictionColumnName">The model's class probabilities (vector) or positive-class probability (Single).</param>
        /// <param name="numberOfSlices">Slices returned.</param>
        /// <param name="numberOfComponents">Mixture components, k̄.</param>
        /// <param name="labelAndPredictionWeight">γ = γ̂, the weight of the label and prediction terms (10; the reference class defaults to 1, see <see cref="DominoEstimator.Options.LabelWeight"/>).</param>
        /// <param name="pcaComponents">Principal components kept before the mixture; null or 0 disables PCA.</param>
        /// <remarks>See <see cref="DominoEstimator"/> for the input and output columns.</remarks>
        public static DominoEstimator HazyDomino(this TransformsCatalog catalog,
            string embeddingColumnName = DefaultColumnNames.Features, string labelColumnName = DefaultColumnNames.Label,
            string predictionColumnName = DefaultColumnNames.Score, int numberOfSlices = 5, int numberOfComponents = 25,
            double labelAndPredictionWeight = 10, int? pcaComponents = 128) =>
            new(HazyEnvironment.From((object)catalog), SlicingCatalog.MakeOptions(embeddingColumnName, labelColumnName, predictionColumnName,
                numberOfSlices, numberOfComponents, labelAndPredictionWeight, pcaComponents));

        /// <summary>Domino slice discovery with all options.</summary>
        /// <param name="catalog">The transforms catalog.</param>
        /// <param name="options">The slicer's options.</param>
        /// <remarks>See <see cref="DominoEstimator"/> for the input and output columns.</remarks>
        public static DominoEstimator HazyDomino(this TransformsCatalog catalog, DominoEstimator.Options options) =>
            new(HazyEnvironment.From((object)catalog), options);
    }
}

namespace Microsoft.ML.Hazy
{
    /// <summary>Slice discovery: <c>mlContext.Hazy().Slicing</c>.</summary>
    public sealed class SlicingCatalog
    {
        private readonly HazyEnvironment _env;

        internal SlicingCatalog(HazyEnvironment env) => _env = env;

        /// <summary>Domino slice discovery: an error-aware mixture over embeddings, labels and predictions.</summary>
        /// <param name="embeddingColumnName">The embedding column: a known-size vector of Single.</param>
        /// <param name="labelColumnName">The label column: a key, Boolean or numeric.</param>
        /// <param name="predictionColumnName">The model's class probabilities (vector) or positive-class probability (Single).</param>
        /// <param name="numberOfSlices">Slices returned.</param>
        /// <param name="numberOfComponents">Mixture components, k̄.</param>
        /// <param name="labelAndPredictionWeight">γ = γ̂, the weight of the label and prediction terms (10; the reference class defaults to 1, see <see cref="DominoEstimator.Options.LabelWeight"/>).</param>
        /// <param name="pcaComponents">Principal components kept before the mixture; null or 0 disables PCA.</param>
        /// <remarks>
        /// <format type="text/markdown"><![CDATA[
        /// | Input column | Type |
        /// | -- | -- |
        /// | embedding | known-size vector of Single |
        /// | label | key, Boolean, or numeric |
        /// | prediction | vector of Single class probabilities, or Single probability |
        ///
        /// | Output column | Type |
        /// | -- | -- |
        /// | `SliceProbabilities` | vector of Single, one per slice |
        /// | `Slice` | key whose values are the slice indices as text ("0" … "n−1") |
        /// ]]></format>
        /// </remarks>
        public DominoEstimator Domino(string embeddingColumnName = DefaultColumnNames.Features, string labelColumnName = DefaultColumnNames.Label,
            string predictionColumnName = DefaultColumnNames.Score, int numberOfSlices = 5, int numberOfComponents = 25,
            double labelAndPredictionWeight = 10, int? pcaComponents = 128) =>
            new(_env, MakeOptions(embeddingColumnName, labelColumnName, predictionColumnName, numberOfSlices, numberOfComponents, labelAndPredictionWeight, pcaComponents));

        /// <summary>Domino slice discovery with all options.</summary>
        /// <param name="options">The slicer's options.</param>
        /// <remarks>See <see cref="DominoEstimator"/> for the input and output columns.</remarks>
        public DominoEstimator Domino(DominoEstimator.Options options) => new(_env, options);

        /// <summary>
        /// Pseudo-groups for group-robust training (GEORGE): each class's embeddings clustered separately, every (class, cluster)
        /// pair a group, appended to <paramref name="data"/> as a key column. See <see cref="PseudoGroups"/>.
        /// </summary>
        /// <param name="data">The training data: an embedding and a label per row.</param>
        /// <param name="embeddingColumnName">The embedding column: a known-size vector of Single (a Hazy encoder's <c>Embedding</c>, say).</param>
        /// <param name="labelColumnName">The label column: a key.</param>
        /// <param name="outputColumnName">The group column appended.</param>
        /// <param name="clustersPerClass">Clusters per class; 0 chooses each class's by the silhouette score (1 when no clustering scores 0.25).</param>
        /// <param name="maximumClustersPerClass">The most clusters per class the silhouette search tries.</param>
        /// <param name="seed">Seed of the k-means seeding; null uses the MLContext's random source.</param>
        public PseudoGroups ProposeGroups(IDataView data, string embeddingColumnName, string labelColumnName = DefaultColumnNames.Label,
            string outputColumnName = "Group", int clustersPerClass = 0, int maximumClustersPerClass = 5, int? seed = null) =>
            PseudoGroups.Propose(data, embeddingColumnName, labelColumnName, outputColumnName, clustersPerClass, maximumClustersPerClass,
                seed ?? _env.Env.Register(nameof(ProposeGroups)).Rand.Next());

        internal static DominoEstimator.Options MakeOptions(string embedding, string label, string prediction, int slices, int components, double weight, int? pca) =>
            new()
            {
                EmbeddingColumnName = embedding,
                LabelColumnName = label,
                PredictionColumnName = prediction,
                NumberOfSlices = slices,
                NumberOfComponents = components,
                LabelWeight = weight,
                PredictionWeight = weight,
                PcaComponents = pca,
            };
    }
}
