namespace Microsoft.ML.Hazy.Slicing.Evaluation;

/// <summary>The rows a slice discovery method sees: embeddings, labels and the model's class probabilities.</summary>
public sealed class SliceDiscoveryData
{
    /// <summary>Creates the data, checking the array sizes and that labels are classes.</summary>
    /// <param name="embeddings">Row-major rows × <paramref name="dimensions"/>.</param>
    /// <param name="dimensions">Values per embedding.</param>
    /// <param name="labels">The class index of each row.</param>
    /// <param name="probabilities">Row-major rows × <paramref name="classes"/>: the model's class probabilities.</param>
    /// <param name="classes">The number of classes.</param>
    public SliceDiscoveryData(float[] embeddings, int dimensions, int[] labels, float[] probabilities, int classes)
    {
        ArgumentNullException.ThrowIfNull(embeddings);
        ArgumentNullException.ThrowIfNull(labels);
        ArgumentNullException.ThrowIfNull(probabilities);
        ArgumentOutOfRangeException.ThrowIfLessThan(dimensions, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(classes, 2);
        if (embeddings.Length != (long)labels.Length * dimensions)
            throw new ArgumentException($"Expected {labels.Length} × {dimensions} embedding values; found {embeddings.Length}.", nameof(embeddings));
        if (probabilities.Length != (long)labels.Length * classes)
            throw new ArgumentException($"Expected {labels.Length} × {classes} probabilities; found {probabilities.Length}.", nameof(probabilities));
        for (int i = 0; i < labels.Length; i++)
            if (labels[i] < 0 || labels[i] >= classes)
                throw new ArgumentOutOfRangeException(nameof(labels), $"Label {labels[i]} at row {i} is not a class 0 to {classes - 1}.");
        Embeddings = embeddings;
        Dimensions = dimensions;
        Labels = labels;
        Probabilities = probabilities;
        Classes = classes;
    }

    /// <summary>Row-major rows × <see cref="Dimensions"/>.</summary>
    public float[] Embeddings { get; }

    /// <summary>Values per embedding.</summary>
    public int Dimensions { get; }

    /// <summary>Class index of each row.</summary>
    public int[] Labels { get; }

    /// <summary>Row-major rows × <see cref="Classes"/>.</summary>
    public float[] Probabilities { get; }

    /// <summary>The number of classes.</summary>
    public int Classes { get; }

    /// <summary>The number of rows.</summary>
    public int Count => Labels.Length;

    /// <summary>The model's most probable class for row <paramref name="row"/>.</summary>
    public int Predicted(int row)
    {
        int best = 0;
        for (int c = 1; c < Classes; c++)
            if (Probabilities[row * Classes + c] > Probabilities[row * Classes + best])
                best = c;
        return best;
    }

    internal DominoRows ToRows()
    {
        int n = Count, c = Classes;
        var labels = new double[(long)n * c];
        var predictions = new double[(long)n * c];
        for (int i = 0; i < n; i++)
        {
            labels[(long)i * c + Labels[i]] = 1;
            for (int j = 0; j < c; j++)
                predictions[(long)i * c + j] = Probabilities[(long)i * c + j];
        }
        return new DominoRows(Embeddings, labels, predictions, n);
    }
}

/// <summary>A slice discovery method: fitted on validation rows, it scores test rows for each of its slices.</summary>
public interface ISliceDiscoveryMethod
{
    /// <summary>A short name for tables.</summary>
    string Name { get; }

    /// <summary>Fits on <paramref name="validation"/> and returns, per row of <paramref name="test"/>, one score per predicted slice.</summary>
    /// <param name="validation">The rows the method is fitted on.</param>
    /// <param name="test">The rows scored.</param>
    /// <param name="slices">How many slices to return (a method may pad with zero columns).</param>
    /// <param name="seed">Seed of any random initialisation.</param>
    double[][] FitPredict(SliceDiscoveryData validation, SliceDiscoveryData test, int slices, int seed);
}

/// <summary>Domino's error-aware mixture (or, with γ = γ̂ = 0, a plain diagonal Gaussian mixture with Domino's slice selection).</summary>
public sealed class DominoSliceDiscovery : ISliceDiscoveryMethod
{
    private readonly DominoEstimator.Options _options;

    /// <summary>Creates the method from Domino options (their column names are ignored; the number of slices comes from <see cref="FitPredict"/>).</summary>
    /// <param name="name">A short name for tables.</param>
    /// <param name="options">The mixture's options.</param>
    public DominoSliceDiscovery(string name, DominoEstimator.Options options)
    {
        Name = name ?? throw new ArgumentNullException(nameof(name));
        _options = options ?? throw new ArgumentNullException(nameof(options));
    }

    /// <summary>Domino with its defaults (γ = γ̂ = 10, where the reference class uses 1: see <see cref="DominoEstimator.Options.LabelWeight"/>; confusion initialisation).</summary>
    public static DominoSliceDiscovery Domino(int? pcaComponents = 128) => new("Domino", new DominoEstimator.Options { PcaComponents = pcaComponents });

    /// <summary>A plain diagonal Gaussian mixture on the embeddings (γ = γ̂ = 0, k-means initialisation, as scikit-learn's), slices chosen by Domino's rule.</summary>
    public static DominoSliceDiscovery GaussianMixture(int? pcaComponents = 128) =>
        new("GMM", new DominoEstimator.Options { PcaComponents = pcaComponents, LabelWeight = 0, PredictionWeight = 0, Initialization = DominoInitialization.KMeans });

    /// <inheritdoc/>
    public string Name { get; }

    /// <inheritdoc/>
    public double[][] FitPredict(SliceDiscoveryData validation, SliceDiscoveryData test, int slices, int seed)
    {
        Checks(validation, test, slices);
        var o = Clone(_options);
        o.NumberOfSlices = Math.Min(slices, o.NumberOfComponents);
        var model = DominoFitter.Fit(validation.ToRows(), validation.Dimensions, validation.Classes, o, seed, null, default, out _);
        var rows = test.ToRows();
        var p = model.SliceProbabilities(model.Responsibilities(rows, true), rows.Count);
        return Pad(p, rows.Count, o.NumberOfSlices, slices);
    }

    internal static void Checks(SliceDiscoveryData validation, SliceDiscoveryData test, int slices)
    {
        ArgumentNullException.ThrowIfNull(validation);
        ArgumentNullException.ThrowIfNull(test);
        ArgumentOutOfRangeException.ThrowIfLessThan(slices, 1);
        if (validation.Dimensions != test.Dimensions || validation.Classes != test.Classes)
            throw new ArgumentException("The validation and test rows differ in embedding size or number of classes.", nameof(test));
    }

    internal static double[][] Pad(double[] flat, int rows, int width, int slices) =>
        Enumerable.Range(0, rows).Select(i =>
        {
            var row = new double[slices];
            Array.Copy(flat, (long)i * width, row, 0, Math.Min(width, slices));
            return row;
        }).ToArray();

    private static DominoEstimator.Options Clone(DominoEstimator.Options o) => new()
    {
        NumberOfComponents = o.NumberOfComponents,
        PcaComponents = o.PcaComponents,
        LabelWeight = o.LabelWeight,
        PredictionWeight = o.PredictionWeight,
        Initialization = o.Initialization,
        ConfusionNoise = o.ConfusionNoise,
        CovarianceRegularization = o.CovarianceRegularization,
        Tolerance = o.Tolerance,
        MaximumNumberOfIterations = o.MaximumNumberOfIterations,
        NumberOfInitializations = o.NumberOfInitializations,
    };
}

/// <summary>
/// The confusion-matrix baseline: one slice per cell (label a, prediction b), scored 1[y = a] · ŷ(b), so the model's
/// most confident mistakes of each kind rank first. Needs a budget of at least c² slices.
/// </summary>
public sealed class ConfusionMatrixSliceDiscovery : ISliceDiscoveryMethod
{
    /// <inheritdoc/>
    public string Name => "Confusion";

    /// <inheritdoc/>
    public double[][] FitPredict(SliceDiscoveryData validation, SliceDiscoveryData test, int slices, int seed)
    {
        DominoSliceDiscovery.Checks(validation, test, slices);
        int c = test.Classes;
        if (slices < c * c)
            throw new ArgumentOutOfRangeException(nameof(slices), slices, $"The confusion-matrix baseline returns one slice per cell of the {c}×{c} matrix; expected a budget of at least {c * c}.");
        return Enumerable.Range(0, test.Count).Select(i =>
        {
            var row = new double[slices];
            for (int b = 0; b < c; b++)
                row[test.Labels[i] * c + b] = test.Probabilities[i * c + b];
            return row;
        }).ToArray();
    }
}

/// <summary>
/// A per-class Gaussian mixture in the spirit of GEORGE (Sohoni et al., 2020): each class's rows are clustered
/// separately (diagonal mixture on the PCA-reduced embeddings, k-means initialisation; GEORGE's UMAP step is left out)
/// and the clusters whose predictions drift furthest from their labels are the slices.
/// </summary>
public sealed class PerClassMixtureSliceDiscovery : ISliceDiscoveryMethod
{
    private readonly int _components;
    private readonly int? _pca;

    /// <summary>Creates the baseline.</summary>
    /// <param name="totalComponents">Clusters over all classes, split evenly between the classes (at least one each).</param>
    /// <param name="pcaComponents">Principal components kept (fitted on all validation rows); null or 0 disables PCA.</param>
    public PerClassMixtureSliceDiscovery(int totalComponents = 25, int? pcaComponents = 128)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(totalComponents, 1);
        _components = totalComponents;
        _pca = pcaComponents;
    }

    /// <inheritdoc/>
    public string Name => "PerClassGMM";

    /// <inheritdoc/>
    public double[][] FitPredict(SliceDiscoveryData validation, SliceDiscoveryData test, int slices, int seed)
    {
        DominoSliceDiscovery.Checks(validation, test, slices);
        int c = validation.Classes, d = validation.Dimensions;
        PrincipalComponents? pca = null;
        if (_pca is int m && m > 0)
            pca = PrincipalComponents.Fit(validation.Embeddings, validation.Count, d, Math.Min(m, Math.Min(d, validation.Count)));
        double[] Reduce(SliceDiscoveryData data) => pca is not null ? pca.Project(data.Embeddings, data.Count) : Array.ConvertAll(data.Embeddings, v => (double)v);
        int dims = pca?.Count ?? d;
        var valX = Reduce(validation);
        var testX = Reduce(test);
        var valRows = validation.ToRows();
        var testRows = test.ToRows();
        var random = new Random(seed);
        int perClass = Math.Max(1, (_components + c - 1) / c);

        var candidates = new List<(double Gap, int Class, MixtureParameters Mixture, int Component)>();
        for (int cls = 0; cls < c; cls++)
        {
            var members = Enumerable.Range(0, validation.Count).Where(i => validation.Labels[i] == cls).ToArray();
            int k = Math.Min(perClass, members.Length);
            if (k == 0)
                continue;
            var data = Subset(valX, valRows, members, dims, c);
            var fit = ErrorAwareMixture.Fit(data, new MixtureSettings(k, 0, 0, Initialization: DominoInitialization.KMeans), random);
            for (int s = 0; s < k; s++)
                candidates.Add((Math.Abs(ErrorAwareMixture.Gap(fit.Parameters, s)), cls, fit.Parameters, s));
        }
        var chosen = candidates.Select((x, i) => (x, i)).OrderByDescending(t => t.x.Gap).ThenBy(t => t.i).Take(slices).Select(t => t.x).ToArray();

        var result = Enumerable.Range(0, test.Count).Select(_ => new double[slices]).ToArray();
        foreach (var group in chosen.Select((x, j) => (x, j)).GroupBy(t => t.x.Class))
        {
            int cls = group.Key;
            var members = Enumerable.Range(0, test.Count).Where(i => test.Labels[i] == cls).ToArray();
            if (members.Length == 0)
                continue;
            var mixture = group.First().x.Mixture;
            var data = Subset(testX, testRows, members, dims, c);
            var resp = new double[(long)members.Length * mixture.Components];
            ErrorAwareMixture.EStep(mixture, data, 0, 0, resp);
            foreach (var (x, j) in group)
                for (int r = 0; r < members.Length; r++)
                    result[members[r]][j] = resp[(long)r * mixture.Components + x.Component];
        }
        return result;
    }

    private static MixtureData Subset(double[] x, DominoRows rows, int[] members, int dims, int c)
    {
        var sx = new double[(long)members.Length * dims];
        var sy = new double[(long)members.Length * c];
        var sp = new double[(long)members.Length * c];
        for (int r = 0; r < members.Length; r++)
        {
            Array.Copy(x, (long)members[r] * dims, sx, (long)r * dims, dims);
            Array.Copy(rows.Labels, (long)members[r] * c, sy, (long)r * c, c);
            Array.Copy(rows.Predictions, (long)members[r] * c, sp, (long)r * c, c);
        }
        return new MixtureData(sx, members.Length, dims, sy, sp, c);
    }
}
