namespace Microsoft.ML.Hazy.Sequence.MiniRocket;

/// <summary>
/// The fitted state of MiniRocket (Dempster, Schmidt and Webb, KDD 2021): the 84 kernels of length 9 whose weights are
/// −1 except 2 at three positions, the dilations with how many features each gets, the channels each (dilation, kernel)
/// combination sums over, and one bias per feature. Pure managed code; no libtorch.
/// </summary>
internal sealed class MiniRocketKernels
{
    public const int KernelLength = 9;

    /// <summary>The 84 choices of the three positions (of 9) whose weight is 2, in lexicographic order.</summary>
    public static readonly int[][] TwoPositions = Combinations();

    public static int KernelCount => TwoPositions.Length;

    private MiniRocketKernels(int channels, int referenceLength, int[] dilations, int[] featuresPerDilation, int[][] combinationChannels, float[] biases)
    {
        Channels = channels;
        ReferenceLength = referenceLength;
        Dilations = dilations;
        FeaturesPerDilation = featuresPerDilation;
        CombinationChannels = combinationChannels;
        Biases = biases;
    }

    public int Channels { get; }

    /// <summary>The series length the dilations were chosen for (the longest training row, or the option).</summary>
    public int ReferenceLength { get; }

    public int[] Dilations { get; }

    public int[] FeaturesPerDilation { get; }

    /// <summary>For combination (dilation index d, kernel k) at d·84 + k, the channels whose convolutions are summed.</summary>
    public int[][] CombinationChannels { get; }

    public float[] Biases { get; }

    public int FeatureCount => Biases.Length;

    /// <summary>Every other combination takes its PPV over the steps the kernel covers without padding (the reference alternates).</summary>
    public static bool ValidStepsOnly(int dilationIndex, int kernelIndex) => (dilationIndex % 2 + kernelIndex) % 2 == 1;

    /// <summary>
    /// Dilations ⌊2^e⌋ for e evenly spaced on [0, log2((L − 1) / 8)] (duplicates merged), with the features per kernel shared
    /// out in proportion to how often each dilation occurred, the remainder one at a time from the smallest.
    /// </summary>
    public static (int[] Dilations, int[] FeaturesPerDilation) FitDilations(int referenceLength, int featuresPerKernel, int maximumDilationsPerKernel)
    {
        int trueMaximum = Math.Min(featuresPerKernel, maximumDilationsPerKernel);
        double multiplier = featuresPerKernel / (double)trueMaximum;
        double maxExponent = Math.Log2(Math.Max(referenceLength - 1, KernelLength - 1) / (double)(KernelLength - 1));
        var counts = new SortedDictionary<int, int>();
        for (int i = 0; i < trueMaximum; i++)
        {
            double exponent = trueMaximum == 1 ? 0 : maxExponent * i / (trueMaximum - 1);
            int dilation = (int)Math.Pow(2, exponent);
            counts[dilation] = counts.TryGetValue(dilation, out int c) ? c + 1 : 1;
        }
        var dilations = counts.Keys.ToArray();
        var features = counts.Values.Select(c => (int)(c * multiplier)).ToArray();
        int remainder = featuresPerKernel - features.Sum();
        for (int i = 0; remainder > 0; i = (i + 1) % features.Length, remainder--)
            features[i]++;
        return (dilations, features);
    }

    /// <summary>The low-discrepancy quantiles (i·φ) mod 1, i = 1..n, φ the golden ratio.</summary>
    public static double[] Quantiles(int n) =>
        Enumerable.Range(1, n).Select(i => i * ((Math.Sqrt(5) + 1) / 2) % 1).ToArray();

    /// <summary>The q-quantile of <paramref name="sorted"/> by linear interpolation between order statistics (numpy's default).</summary>
    public static double Quantile(double[] sorted, double q)
    {
        double position = q * (sorted.Length - 1);
        int below = (int)Math.Floor(position);
        int above = Math.Min(below + 1, sorted.Length - 1);
        double fraction = position - below;
        return sorted[below] + (sorted[above] - sorted[below]) * fraction;
    }

    /// <summary>
    /// Fits dilations to <paramref name="referenceLength"/>, draws each combination's channels (a count ⌊2^U(0, log2(min(C, 9) + 1))⌋
    /// as the multivariate MiniRocket does) and its bias quantiles from the convolution of one random training row.
    /// </summary>
    public static MiniRocketKernels Fit(IReadOnlyList<float[]> rows, int channels, int referenceLength, int numberOfFeatures, int maximumDilationsPerKernel, int seed)
    {
        int featuresPerKernel = numberOfFeatures / KernelCount;
        var (dilations, featuresPerDilation) = FitDilations(referenceLength, featuresPerKernel, maximumDilationsPerKernel);
        var random = new Random(seed);
        var combinationChannels = new int[dilations.Length * KernelCount][];
        double maxExponent = Math.Log2(Math.Min(channels, KernelLength) + 1);
        for (int i = 0; i < combinationChannels.Length; i++)
        {
            if (channels == 1)
            {
                combinationChannels[i] = new[] { 0 };
                continue;
            }
            int count = Math.Clamp((int)Math.Pow(2, random.NextDouble() * maxExponent), 1, channels);
            var all = Enumerable.Range(0, channels).ToArray();
            random.Shuffle(all);
            combinationChannels[i] = all.Take(count).Order().ToArray();
        }
        var biases = new float[featuresPerKernel * KernelCount];
        var quantiles = Quantiles(biases.Length);
        int feature = 0;
        for (int d = 0; d < dilations.Length; d++)
        {
            for (int k = 0; k < KernelCount; k++)
            {
                var row = rows[random.Next(rows.Count)];
                var convolution = Convolve(row, channels, dilations[d], TwoPositions[k], combinationChannels[d * KernelCount + k]);
                Array.Sort(convolution);
                for (int f = 0; f < featuresPerDilation[d]; f++, feature++)
                    biases[feature] = (float)Quantile(convolution, quantiles[feature]);
            }
        }
        return new MiniRocketKernels(channels, referenceLength, dilations, featuresPerDilation, combinationChannels, biases);
    }

    /// <summary>
    /// C[t] = Σ_c Σ_j w_j · x_c[t + (j − 4)·d], the kernel centred on t with zeros outside the row (w_j = 2 at the three
    /// positions, −1 elsewhere), computed as −Σ_j x + 3 Σ_{j ∈ positions} x.
    /// </summary>
    public static double[] Convolve(float[] row, int channels, int dilation, int[] positions, int[] combinationChannels)
    {
        int length = row.Length / channels;
        var result = new double[length];
        foreach (int c in combinationChannels)
        {
            for (int j = 0; j < KernelLength; j++)
            {
                int offset = (j - KernelLength / 2) * dilation;
                double weight = positions.Contains(j) ? 2 : -1;
                int start = Math.Max(0, -offset), stop = Math.Min(length, length - offset);
                for (int t = start; t < stop; t++)
                    result[t] += weight * row[(t + offset) * channels + c];
            }
        }
        return result;
    }

    /// <summary>
    /// The proportion of positive values (PPV) of C − bias for every feature of one row, in the order dilation, kernel, bias.
    /// Combinations marked by <see cref="ValidStepsOnly"/> count the steps where the dilated kernel lies inside the row; a row
    /// too short to have any such step counts all its steps.
    /// </summary>
    public void Transform(float[] row, Span<float> features)
    {
        int length = row.Length / Channels;
        int feature = 0;
        for (int d = 0; d < Dilations.Length; d++)
        {
            int padding = (KernelLength - 1) * Dilations[d] / 2;
            for (int k = 0; k < KernelCount; k++)
            {
                var convolution = Convolve(row, Channels, Dilations[d], TwoPositions[k], CombinationChannels[d * KernelCount + k]);
                int start = 0, stop = length;
                if (ValidStepsOnly(d, k) && length > 2 * padding)
                {
                    start = padding;
                    stop = length - padding;
                }
                for (int f = 0; f < FeaturesPerDilation[d]; f++, feature++)
                {
                    double bias = Biases[feature];
                    int positive = 0;
                    for (int t = start; t < stop; t++)
                        positive += convolution[t] > bias ? 1 : 0;
                    features[feature] = positive / (float)(stop - start);
                }
            }
        }
    }

    private static int[][] Combinations()
    {
        var list = new List<int[]>();
        for (int a = 0; a < KernelLength; a++)
            for (int b = a + 1; b < KernelLength; b++)
                for (int c = b + 1; c < KernelLength; c++)
                    list.Add(new[] { a, b, c });
        return list.ToArray();
    }
}
