namespace Microsoft.ML.Hazy.Slicing;

/// <summary>
/// A fitted Domino error-aware mixture: the PCA of the embeddings, the mixture's parameters, and the components
/// chosen as slices. Means and variances live in the PCA space (the embedding space when PCA is off).
/// </summary>
public sealed class DominoModelParameters
{
    internal DominoModelParameters(PrincipalComponents? pca, MixtureParameters mixture, int[] sliceComponents,
        double labelWeight, double predictionWeight, MixtureFit fit, int embeddingSize)
    {
        Pca = pca;
        Mixture = mixture;
        SliceComponentIndices = sliceComponents;
        LabelWeight = labelWeight;
        PredictionWeight = predictionWeight;
        EmbeddingSize = embeddingSize;
        LowerBound = fit.LowerBound;
        Iterations = fit.Iterations;
        Converged = fit.Converged;
        LowerBoundHistory = Array.AsReadOnly(fit.LowerBoundHistory);
    }

    internal PrincipalComponents? Pca { get; }

    internal MixtureParameters Mixture { get; }

    internal int[] SliceComponentIndices { get; }

    /// <summary>Values per row of the embedding column.</summary>
    public int EmbeddingSize { get; }

    /// <summary>Dimensions the mixture models: the number of PCA components kept, or the embedding size.</summary>
    public int Dimensions => Mixture.Dimensions;

    /// <summary>The number of classes of the label and prediction.</summary>
    public int Classes => Mixture.Classes;

    /// <summary>The number of mixture components, k̄.</summary>
    public int NumberOfComponents => Mixture.Components;

    /// <summary>γ, the weight of the label term.</summary>
    public double LabelWeight { get; }

    /// <summary>γ̂, the weight of the prediction term.</summary>
    public double PredictionWeight { get; }

    /// <summary>Whether the embeddings are reduced by PCA before the mixture.</summary>
    public bool UsesPca => Pca is not null;

    /// <summary>Variance of the fitted embeddings along each kept principal component (empty without PCA).</summary>
    public IReadOnlyList<double> PcaExplainedVariances => Array.AsReadOnly(Pca?.ExplainedVariances ?? Array.Empty<double>());

    /// <summary>The mixing weights π_s.</summary>
    public IReadOnlyList<double> Weights => Array.AsReadOnly(Mixture.Weights);

    /// <summary>The mean μ_s of component <paramref name="component"/>.</summary>
    public IReadOnlyList<double> GetMean(int component) => Row(Mixture.Means, component, Dimensions);

    /// <summary>The diagonal covariance σ²_s of component <paramref name="component"/> (reg_covar included).</summary>
    public IReadOnlyList<double> GetVariances(int component) => Row(Mixture.Variances, component, Dimensions);

    /// <summary>p_s: the probability of each true class within component <paramref name="component"/>.</summary>
    public IReadOnlyList<double> GetLabelProbabilities(int component) => Row(Mixture.LabelProbabilities, component, Classes);

    /// <summary>p̂_s: the model's mean predicted probability of each class within component <paramref name="component"/>.</summary>
    public IReadOnlyList<double> GetPredictionProbabilities(int component) => Row(Mixture.PredictionProbabilities, component, Classes);

    /// <summary>The components returned as slices, in slice order (slice 0 has the largest gap).</summary>
    public IReadOnlyList<int> SliceComponents => Array.AsReadOnly(SliceComponentIndices);

    /// <summary>max_c (p̂_s(c) − p_s(c)) of component <paramref name="component"/>: how far predictions drift from labels there.</summary>
    public double GetGap(int component) => ErrorAwareMixture.Gap(Mixture, CheckComponent(component));

    /// <summary>The final mean log-likelihood (the lower bound EM maximises) of the best initialisation.</summary>
    public double LowerBound { get; }

    /// <summary>EM iterations the best initialisation ran.</summary>
    public int Iterations { get; }

    /// <summary>Whether the best initialisation stopped on the tolerance rather than on the iteration limit.</summary>
    public bool Converged { get; }

    /// <summary>The mean log-likelihood at each iteration of the best initialisation.</summary>
    public IReadOnlyList<double> LowerBoundHistory { get; }

    /// <summary>Embeddings projected onto the principal components (or converted to double without PCA): row-major n × <see cref="Dimensions"/>.</summary>
    internal double[] Reduce(float[] embeddings, int rows) =>
        Pca is not null ? Pca.Project(embeddings, rows) : Array.ConvertAll(embeddings, v => (double)v);

    /// <summary>Responsibilities of every component (row-major n × k̄) for rows with their labels and predictions.</summary>
    internal double[] Responsibilities(DominoRows rows, bool useLabelsAndPredictions)
    {
        var data = new MixtureData(Reduce(rows.Embeddings, rows.Count), rows.Count, Dimensions, rows.Labels, rows.Predictions, Classes);
        var resp = new double[(long)rows.Count * NumberOfComponents];
        ErrorAwareMixture.EStep(Mixture, data, useLabelsAndPredictions ? LabelWeight : 0, useLabelsAndPredictions ? PredictionWeight : 0, resp);
        return resp;
    }

    /// <summary>The selected columns of <paramref name="responsibilities"/>: row-major n × slices.</summary>
    internal double[] SliceProbabilities(double[] responsibilities, int rows)
    {
        int k = NumberOfComponents, m = SliceComponentIndices.Length;
        var result = new double[(long)rows * m];
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < m; j++)
                result[(long)i * m + j] = responsibilities[(long)i * k + SliceComponentIndices[j]];
        return result;
    }

    private int CheckComponent(int component)
    {
        if (component < 0 || component >= NumberOfComponents)
            throw new ArgumentOutOfRangeException(nameof(component), component, $"Expected a component index from 0 to {NumberOfComponents - 1}.");
        return component;
    }

    private IReadOnlyList<double> Row(double[] values, int component, int width) =>
        Array.AsReadOnly(values.AsSpan(CheckComponent(component) * width, width).ToArray());
}
