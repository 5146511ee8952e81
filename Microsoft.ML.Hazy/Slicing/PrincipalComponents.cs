using System.Numerics.Tensors;

namespace Microsoft.ML.Hazy.Slicing;

/// <summary>
/// Principal component analysis by eigen-decomposition of the sample covariance: the projection of a row x is
/// Vᵀ(x − mean), with V the eigenvectors of the <see cref="Count"/> largest eigenvalues.
/// </summary>
internal sealed class PrincipalComponents
{
    private const int BlockRows = 256;

    private PrincipalComponents(double[] mean, double[] components, double[] variances, int inputSize, int count)
    {
        Mean = mean;
        Components = components;
        ExplainedVariances = variances;
        InputSize = inputSize;
        Count = count;
    }

    /// <summary>The column means of the fitted data.</summary>
    public double[] Mean { get; }

    /// <summary>Row-major <see cref="Count"/>×<see cref="InputSize"/> unit vectors, by decreasing variance.</summary>
    public double[] Components { get; }

    /// <summary>Variance of the data along each component (covariance divided by n − 1).</summary>
    public double[] ExplainedVariances { get; }

    public int InputSize { get; }

    public int Count { get; }

    /// <summary>Fits on <paramref name="n"/> rows of <paramref name="d"/> values (row-major) and keeps <paramref name="count"/> components.</summary>
    public static PrincipalComponents Fit(float[] data, int n, int d, int count, CancellationToken cancellation = default)
    {
        if (count < 1 || count > d)
            throw new ArgumentOutOfRangeException(nameof(count), count, $"Expected 1 to {d} components.");
        var mean = new double[d];
        for (int i = 0; i < n; i++)
        {
            var row = data.AsSpan(i * d, d);
            for (int j = 0; j < d; j++)
                mean[j] += row[j];
        }
        for (int j = 0; j < d; j++)
            mean[j] /= n;

        var cov = Scatter(data, n, d, mean, cancellation);
        double scale = 1.0 / Math.Max(n - 1, 1);
        for (int j = 0; j < d * d; j++)
            cov[j] *= scale;

        var (values, vectors) = SymmetricEigen.Decompose(cov, d, cancellation);
        var components = new double[count * d];
        Array.Copy(vectors, components, count * d);
        for (int c = 0; c < count; c++)
        {
            // A deterministic sign: the entry of largest magnitude is positive.
            var v = components.AsSpan(c * d, d);
            int arg = 0;
            for (int j = 1; j < d; j++)
                if (Math.Abs(v[j]) > Math.Abs(v[arg]))
                    arg = j;
            if (v[arg] < 0)
                TensorPrimitives.Negate(v, v);
        }
        var variances = values.Take(count).Select(v => Math.Max(v, 0)).ToArray();
        return new PrincipalComponents(mean, components, variances, d, count);
    }

    /// <summary>
    /// The scatter matrix Σ_i (x_i − mean)(x_i − mean)ᵀ (row-major d×d). Blocks of rows are centred and transposed so
    /// that every entry is one contiguous dot product; entry (j, l) always sums its blocks in the same order.
    /// </summary>
    /// <remarks>
    /// The float products run on each column divided by a power of two at or above its largest deviation, and entry (j, l)
    /// is multiplied back in double: finite embeddings of any size (1e30, whose squares overflow float) give a finite
    /// scatter, and a power of two changes no rounding, so ordinary embeddings give the same bits as unscaled products.
    /// </remarks>
    public static double[] Scatter(float[] data, int n, int d, double[] mean, CancellationToken cancellation = default)
    {
        var scale = new double[d];
        for (int i = 0; i < n; i++)
        {
            var row = data.AsSpan(i * d, d);
            for (int j = 0; j < d; j++)
                scale[j] = Math.Max(scale[j], Math.Abs(row[j] - mean[j]));
        }
        for (int j = 0; j < d; j++)
            scale[j] = scale[j] > 0 ? Math.ScaleB(1.0, Math.ILogB(scale[j]) + 1) : 1;
        var cov = new double[d * d];
        var block = new float[d * BlockRows];
        for (int start = 0; start < n; start += BlockRows)
        {
            cancellation.ThrowIfCancellationRequested();
            int rows = Math.Min(BlockRows, n - start);
            for (int r = 0; r < rows; r++)
            {
                var row = data.AsSpan((start + r) * d, d);
                for (int j = 0; j < d; j++)
                    block[j * BlockRows + r] = (float)((row[j] - mean[j]) / scale[j]);
            }
            Parallel.For(0, d, j =>
            {
                var a = new ReadOnlySpan<float>(block, j * BlockRows, rows);
                int o = j * d;
                for (int l = j; l < d; l++)
                    cov[o + l] += TensorPrimitives.Dot(a, new ReadOnlySpan<float>(block, l * BlockRows, rows));
            });
        }
        for (int j = 0; j < d; j++)
        {
            for (int l = j; l < d; l++)
                cov[l * d + j] = cov[j * d + l] *= scale[j] * scale[l];
        }
        return cov;
    }

    /// <summary>Projects <paramref name="n"/> rows (row-major) onto the components: an n×<see cref="Count"/> row-major array.</summary>
    public double[] Project(float[] data, int n)
    {
        int d = InputSize, m = Count;
        var result = new double[(long)n * m];
        Parallel.For(0, (n + BlockRows - 1) / BlockRows, () => new double[d], (b, _, centred) =>
        {
            int end = Math.Min(n, (b + 1) * BlockRows);
            for (int i = b * BlockRows; i < end; i++)
            {
                var row = data.AsSpan(i * d, d);
                for (int j = 0; j < d; j++)
                    centred[j] = row[j] - Mean[j];
                for (int c = 0; c < m; c++)
                    result[(long)i * m + c] = TensorPrimitives.Dot<double>(centred, Components.AsSpan(c * d, d));
            }
            return centred;
        }, _ => { });
        return result;
    }
}
