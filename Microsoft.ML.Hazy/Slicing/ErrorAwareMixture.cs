using System.Numerics;

namespace Microsoft.ML.Hazy.Slicing;

/// <summary>How the mixture's responsibilities are initialised before the first M-step.</summary>
public enum DominoInitialization
{
    /// <summary>
    /// Each component is tied to a cell (label, prediction) of the confusion matrix, round-robin, with a little
    /// uniform noise (the 2022 default). Needs at least c² components for c classes.
    /// </summary>
    Confusion,

    /// <summary>Hard assignments from k-means (k-means++ seeding) on the (reduced) embeddings.</summary>
    KMeans,

    /// <summary>Uniform random responsibilities, normalised per row.</summary>
    Random,
}

/// <summary>The rows the mixture is fitted to or scores: embeddings, label distributions and prediction distributions.</summary>
internal sealed class MixtureData
{
    public MixtureData(double[] x, int rows, int dimensions, double[] labels, double[] predictions, int classes)
    {
        if (x.Length != (long)rows * dimensions || labels.Length != (long)rows * classes || predictions.Length != (long)rows * classes)
            throw new ArgumentException("The embedding, label and prediction arrays do not match the row count.");
        X = x;
        Rows = rows;
        Dimensions = dimensions;
        Labels = labels;
        Predictions = predictions;
        Classes = classes;
    }

    /// <summary>Row-major rows × dimensions.</summary>
    public double[] X { get; }

    public int Rows { get; }

    public int Dimensions { get; }

    /// <summary>Row-major rows × classes: one-hot or soft labels (all zeros when a label is missing).</summary>
    public double[] Labels { get; }

    /// <summary>Row-major rows × classes: the model's class probabilities.</summary>
    public double[] Predictions { get; }

    public int Classes { get; }
}

/// <summary>Parameters of the error-aware mixture: π, μ, diagonal Σ, and the categorical p (labels) and p̂ (predictions).</summary>
internal sealed class MixtureParameters
{
    public MixtureParameters(int components, int dimensions, int classes)
    {
        Components = components;
        Dimensions = dimensions;
        Classes = classes;
        Weights = new double[components];
        Means = new double[components * dimensions];
        Variances = new double[components * dimensions];
        LabelProbabilities = new double[components * classes];
        PredictionProbabilities = new double[components * classes];
    }

    public int Components { get; }

    public int Dimensions { get; }

    public int Classes { get; }

    public double[] Weights { get; }

    /// <summary>Row-major components × dimensions.</summary>
    public double[] Means { get; }

    /// <summary>Row-major components × dimensions, reg_covar included.</summary>
    public double[] Variances { get; }

    /// <summary>Row-major components × classes: p_s.</summary>
    public double[] LabelProbabilities { get; }

    /// <summary>Row-major components × classes: p̂_s.</summary>
    public double[] PredictionProbabilities { get; }

    public MixtureParameters Clone()
    {
        var c = new MixtureParameters(Components, Dimensions, Classes);
        Weights.CopyTo(c.Weights, 0);
        Means.CopyTo(c.Means, 0);
        Variances.CopyTo(c.Variances, 0);
        LabelProbabilities.CopyTo(c.LabelProbabilities, 0);
        PredictionProbabilities.CopyTo(c.PredictionProbabilities, 0);
        return c;
    }

    /// <summary>1/σ² per component and dimension.</summary>
    public double[] Precisions() => Variances.Select(v => 1 / v).ToArray();

    /// <summary>log π_s − ½ d log 2π − ½ Σ_j log σ²_sj: the part of log π_s N(z; μ_s, Σ_s) that does not depend on z.</summary>
    public double[] LogConstants()
    {
        var result = new double[Components];
        for (int s = 0; s < Components; s++)
        {
            double logDet = 0;
            for (int j = 0; j < Dimensions; j++)
                logDet += Math.Log(Variances[s * Dimensions + j]);
            result[s] = Math.Log(Weights[s]) - 0.5 * (Dimensions * Math.Log(2 * Math.PI) + logDet);
        }
        return result;
    }
}

/// <summary>Settings of one EM fit.</summary>
internal sealed record MixtureSettings(
    int Components,
    double LabelWeight,
    double PredictionWeight,
    double CovarianceRegularization = 1e-6,
    double Tolerance = 1e-3,
    int MaximumIterations = 100,
    int Initializations = 1,
    DominoInitialization Initialization = DominoInitialization.Confusion,
    double ConfusionNoise = 1e-3);

/// <summary>The result of an EM fit: the best initialisation's parameters and its history.</summary>
internal sealed record MixtureFit(MixtureParameters Parameters, double LowerBound, int Iterations, bool Converged,
    double[] LowerBoundHistory, double[] Responsibilities);

/// <summary>
/// The error-aware mixture of Domino (Eyuboglu et al., ICLR 2022): a diagonal Gaussian mixture over embeddings whose
/// components also carry categorical distributions of the label and of the model's prediction, weighted by γ and γ̂.
/// </summary>
internal static class ErrorAwareMixture
{
    // The machine epsilon of double, as the reference takes np.finfo(float64).eps.
    private const double Epsilon = 2.220446049250313e-16;

    /// <summary>Fits with <see cref="MixtureSettings.Initializations"/> starts and keeps the one with the best lower bound.</summary>
    public static MixtureFit Fit(MixtureData data, MixtureSettings settings, Random random,
        Action<int, int, double>? onIteration = null, CancellationToken cancellation = default)
    {
        MixtureFit? best = null;
        for (int init = 0; init < settings.Initializations; init++)
        {
            var resp = InitialResponsibilities(data, settings, random);
            var fit = FitFrom(data, settings, resp, (it, lb) => onIteration?.Invoke(init, it, lb), cancellation);
            if (best is null || fit.LowerBound > best.LowerBound)
                best = fit;
        }
        return best!;
    }

    /// <summary>EM from given initial responsibilities (rows × components): M-step, then E and M steps until the mean log-likelihood settles.</summary>
    public static MixtureFit FitFrom(MixtureData data, MixtureSettings settings, double[] initialResponsibilities,
        Action<int, double>? onIteration = null, CancellationToken cancellation = default)
    {
        int k = settings.Components;
        var parameters = MStep(data, initialResponsibilities, k, settings.CovarianceRegularization);
        var resp = new double[(long)data.Rows * k];
        double lowerBound = double.NegativeInfinity;
        var history = new List<double>();
        bool converged = false;
        int iteration = 0;
        while (iteration < settings.MaximumIterations)
        {
            cancellation.ThrowIfCancellationRequested();
            iteration++;
            double previous = lowerBound;
            lowerBound = EStep(parameters, data, settings.LabelWeight, settings.PredictionWeight, resp);
            parameters = MStep(data, resp, k, settings.CovarianceRegularization);
            history.Add(lowerBound);
            onIteration?.Invoke(iteration, lowerBound);
            if (Math.Abs(lowerBound - previous) < settings.Tolerance)
            {
                converged = true;
                break;
            }
        }
        EStep(parameters, data, settings.LabelWeight, settings.PredictionWeight, resp);
        return new MixtureFit(parameters, lowerBound, iteration, converged, history.ToArray(), resp);
    }

    /// <summary>The initial responsibilities (rows × components) of <see cref="MixtureSettings.Initialization"/>.</summary>
    public static double[] InitialResponsibilities(MixtureData data, MixtureSettings settings, Random random)
    {
        int n = data.Rows, k = settings.Components, c = data.Classes;
        var resp = new double[(long)n * k];
        switch (settings.Initialization)
        {
            case DominoInitialization.KMeans:
                var labels = KMeans.Cluster(data.X, n, data.Dimensions, k, random);
                for (int i = 0; i < n; i++)
                    resp[(long)i * k + labels[i]] = 1;
                break;
            case DominoInitialization.Random:
                for (long i = 0; i < resp.Length; i++)
                    resp[i] = random.NextDouble();
                NormalizeRows(resp, n, k);
                break;
            default:
                if (k < c * c)
                    throw new ArgumentOutOfRangeException(nameof(settings),
                        $"The confusion initialisation ties each component to a cell of the {c}×{c} confusion matrix, so it needs at least {c * c} components; "
                        + $"found {k}. Raise NumberOfComponents or use DominoInitialization.KMeans.");
                // r_is ∝ y_i(a)·ŷ_i(b) for the cell (a, b) = divmod(s mod c², c), then uniform noise in [0, confusion_noise).
                for (int i = 0; i < n; i++)
                {
                    for (int s = 0; s < k; s++)
                    {
                        int cell = s % (c * c);
                        resp[(long)i * k + s] = data.Labels[(long)i * c + cell / c] * data.Predictions[(long)i * c + cell % c];
                    }
                }
                NormalizeRows(resp, n, k);
                for (long i = 0; i < resp.Length; i++)
                    resp[i] += random.NextDouble() * settings.ConfusionNoise;
                NormalizeRows(resp, n, k);
                break;
        }
        return resp;
    }

    /// <summary>
    /// E-step: log r_is = log π_s + log N(z_i; μ_s, Σ_s) + γ log(y_i·p_s + ε) + γ̂ log(ŷ_i·p̂_s + ε), normalised by log-sum-exp over s.
    /// Writes r (rows × components) and returns the mean over rows of the log normaliser (the lower bound).
    /// </summary>
    public static double EStep(MixtureParameters p, MixtureData data, double labelWeight, double predictionWeight, double[] resp)
    {
        int n = data.Rows, k = p.Components, d = p.Dimensions, c = p.Classes;
        if (d != data.Dimensions || c != data.Classes)
            throw new ArgumentException($"The mixture has {d} dimensions and {c} classes; the data has {data.Dimensions} and {data.Classes}.");
        var precisions = p.Precisions();
        var constants = p.LogConstants();
        var (chunks, chunkRows) = Chunks(n);
        var partial = new double[chunks];
        Parallel.For(0, chunks, chunk =>
        {
            var logProb = new double[k];
            int end = Math.Min(n, (chunk + 1) * chunkRows);
            double sum = 0;
            for (int i = chunk * chunkRows; i < end; i++)
            {
                var x = new ReadOnlySpan<double>(data.X, i * d, d);
                double max = double.NegativeInfinity;
                for (int s = 0; s < k; s++)
                {
                    double v = constants[s] - 0.5 * WeightedSquaredDistance(x, p.Means.AsSpan(s * d, d), precisions.AsSpan(s * d, d));
                    if (labelWeight != 0)
                        v += labelWeight * Math.Log(Dot(data.Labels, i * c, p.LabelProbabilities, s * c, c) + Epsilon);
                    if (predictionWeight != 0)
                        v += predictionWeight * Math.Log(Dot(data.Predictions, i * c, p.PredictionProbabilities, s * c, c) + Epsilon);
                    logProb[s] = v;
                    if (v > max)
                        max = v;
                }
                double total = 0;
                for (int s = 0; s < k; s++)
                    total += Math.Exp(logProb[s] - max);
                double lse = max + Math.Log(total);
                sum += lse;
                for (int s = 0; s < k; s++)
                    resp[(long)i * k + s] = Math.Exp(logProb[s] - lse);
            }
            partial[chunk] = sum;
        });
        double lowerBound = 0;
        for (int chunk = 0; chunk < chunks; chunk++)
            lowerBound += partial[chunk];
        return lowerBound / n;
    }

    /// <summary>
    /// M-step with n_s = Σ_i r_is + 10ε: π_s = n_s/n, μ_s = Σ r_is z_i/n_s, σ²_s = Σ r_is z_i²/n_s − μ_s² + reg_covar,
    /// p_s = Σ r_is y_i/n_s, p̂_s = Σ r_is ŷ_i/n_s.
    /// </summary>
    public static MixtureParameters MStep(MixtureData data, double[] resp, int k, double covarianceRegularization)
    {
        int n = data.Rows, d = data.Dimensions, c = data.Classes;
        var (chunks, chunkRows) = Chunks(n);
        var partials = new Accumulator[chunks];
        Parallel.For(0, chunks, chunk =>
        {
            var acc = new Accumulator(k, d, c);
            int end = Math.Min(n, (chunk + 1) * chunkRows);
            for (int i = chunk * chunkRows; i < end; i++)
            {
                var x = new ReadOnlySpan<double>(data.X, i * d, d);
                for (int s = 0; s < k; s++)
                {
                    double r = resp[(long)i * k + s];
                    acc.Count[s] += r;
                    // Terms below 1e-14 change no sum visibly; skipping them makes converged mixtures cheap.
                    if (r < 1e-14)
                        continue;
                    AddMoments(acc.Sum.AsSpan(s * d, d), acc.SumSquares.AsSpan(s * d, d), x, r);
                    for (int j = 0; j < c; j++)
                    {
                        acc.Labels[s * c + j] += r * data.Labels[(long)i * c + j];
                        acc.Predictions[s * c + j] += r * data.Predictions[(long)i * c + j];
                    }
                }
            }
            partials[chunk] = acc;
        });
        var total = partials[0];
        for (int chunk = 1; chunk < chunks; chunk++)
            total.Add(partials[chunk]);

        var p = new MixtureParameters(k, d, c);
        for (int s = 0; s < k; s++)
        {
            double ns = total.Count[s] + 10 * Epsilon;
            p.Weights[s] = ns / n;
            for (int j = 0; j < d; j++)
            {
                double mean = total.Sum[s * d + j] / ns;
                double variance = total.SumSquares[s * d + j] / ns - mean * mean + covarianceRegularization;
                if (!(variance > 0))
                    throw new InvalidOperationException(
                        $"Mixture component {s} has a non-positive variance ({variance}) in dimension {j}: the empirical covariance is ill-defined. "
                        + "Decrease NumberOfComponents, or increase CovarianceRegularization.");
                p.Means[s * d + j] = mean;
                p.Variances[s * d + j] = variance;
            }
            for (int j = 0; j < c; j++)
            {
                p.LabelProbabilities[s * c + j] = total.Labels[s * c + j] / ns;
                p.PredictionProbabilities[s * c + j] = total.Predictions[s * c + j] / ns;
            }
        }
        return p;
    }

    /// <summary>
    /// The <paramref name="count"/> components with the largest |max_c (p̂_s(c) − p_s(c))|, the gap between predicted and
    /// true class probabilities, largest first (ties keep the lower index first).
    /// </summary>
    public static int[] SelectSlices(MixtureParameters p, int count) =>
        Enumerable.Range(0, p.Components).OrderByDescending(s => Math.Abs(Gap(p, s))).ThenBy(s => s).Take(count).ToArray();

    /// <summary>max_c (p̂_s(c) − p_s(c)).</summary>
    public static double Gap(MixtureParameters p, int s)
    {
        double max = double.NegativeInfinity;
        for (int j = 0; j < p.Classes; j++)
            max = Math.Max(max, p.PredictionProbabilities[s * p.Classes + j] - p.LabelProbabilities[s * p.Classes + j]);
        return max;
    }

    private static void NormalizeRows(double[] m, int rows, int cols)
    {
        for (int i = 0; i < rows; i++)
        {
            var row = m.AsSpan(i * cols, cols);
            double sum = 0;
            foreach (var v in row)
                sum += v;
            if (sum > 0)
            {
                for (int j = 0; j < cols; j++)
                    row[j] /= sum;
            }
            else
            {
                // A row with no label or prediction mass (a missing label) starts uniform.
                row.Fill(1.0 / cols);
            }
        }
    }

    /// <summary>Fixed chunks of rows, a function of the row count only, so parallel sums are deterministic.</summary>
    private static (int Chunks, int ChunkRows) Chunks(int n)
    {
        int chunkRows = Math.Max(256, (n + 63) / 64);
        return ((n + chunkRows - 1) / chunkRows, chunkRows);
    }

    private static double Dot(double[] a, int ai, double[] b, int bi, int count)
    {
        double s = 0;
        for (int j = 0; j < count; j++)
            s += a[ai + j] * b[bi + j];
        return s;
    }

    private static double WeightedSquaredDistance(ReadOnlySpan<double> x, ReadOnlySpan<double> mean, ReadOnlySpan<double> precision)
    {
        int j = 0;
        double sum = 0;
        if (Vector.IsHardwareAccelerated && x.Length >= Vector<double>.Count)
        {
            var acc = Vector<double>.Zero;
            for (; j <= x.Length - Vector<double>.Count; j += Vector<double>.Count)
            {
                var diff = new Vector<double>(x.Slice(j)) - new Vector<double>(mean.Slice(j));
                acc += diff * diff * new Vector<double>(precision.Slice(j));
            }
            sum = Vector.Sum(acc);
        }
        for (; j < x.Length; j++)
        {
            double diff = x[j] - mean[j];
            sum += diff * diff * precision[j];
        }
        return sum;
    }

    private static void AddMoments(Span<double> sum, Span<double> squares, ReadOnlySpan<double> x, double r)
    {
        int j = 0;
        if (Vector.IsHardwareAccelerated && x.Length >= Vector<double>.Count)
        {
            var rv = new Vector<double>(r);
            for (; j <= x.Length - Vector<double>.Count; j += Vector<double>.Count)
            {
                var xv = new Vector<double>(x.Slice(j));
                var rx = rv * xv;
                (new Vector<double>(sum.Slice(j)) + rx).CopyTo(sum.Slice(j));
                (new Vector<double>(squares.Slice(j)) + rx * xv).CopyTo(squares.Slice(j));
            }
        }
        for (; j < x.Length; j++)
        {
            double rx = r * x[j];
            sum[j] += rx;
            squares[j] += rx * x[j];
        }
    }

    private sealed class Accumulator
    {
        public Accumulator(int k, int d, int c)
        {
            Count = new double[k];
            Sum = new double[k * d];
            SumSquares = new double[k * d];
            Labels = new double[k * c];
            Predictions = new double[k * c];
        }

        public double[] Count { get; }

        public double[] Sum { get; }

        public double[] SumSquares { get; }

        public double[] Labels { get; }

        public double[] Predictions { get; }

        public void Add(Accumulator other)
        {
            Accumulate(Count, other.Count);
            Accumulate(Sum, other.Sum);
            Accumulate(SumSquares, other.SumSquares);
            Accumulate(Labels, other.Labels);
            Accumulate(Predictions, other.Predictions);
        }

        private static void Accumulate(double[] into, double[] from)
        {
            for (int i = 0; i < into.Length; i++)
                into[i] += from[i];
        }
    }
}
