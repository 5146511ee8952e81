namespace Microsoft.ML.Hazy.Slicing;

/// <summary>
/// Eigen-decomposition of a dense symmetric matrix: Householder reduction to tridiagonal form, then implicit
/// QR steps with Wilkinson shifts (Golub and Van Loan, Matrix Computations, algorithms 8.3.1 and 8.3.3).
/// </summary>
internal static class SymmetricEigen
{
    /// <summary>
    /// Eigenvalues in descending order and the matching unit eigenvectors, as rows of a row-major
    /// <paramref name="n"/>×<paramref name="n"/> array (row r is the eigenvector of value r).
    /// </summary>
    /// <param name="matrix">Row-major symmetric matrix; it is overwritten.</param>
    /// <param name="n">The order of the matrix.</param>
    /// <param name="cancellation">Checked before each Householder reflection and each QR sweep.</param>
    public static (double[] Values, double[] Vectors) Decompose(double[] matrix, int n, CancellationToken cancellation = default)
    {
        if (matrix.Length != n * n)
            throw new ArgumentException($"Expected {n * n} values for a {n}×{n} matrix; found {matrix.Length}.", nameof(matrix));
        var qt = new double[n * n];
        for (int i = 0; i < n; i++)
            qt[i * n + i] = 1;
        var diag = new double[n];
        var off = new double[Math.Max(n - 1, 0)];
        Tridiagonalize(matrix, n, qt, diag, off, cancellation);
        DiagonalizeTridiagonal(diag, off, qt, n, cancellation);

        var order = Enumerable.Range(0, n).OrderByDescending(i => diag[i]).ThenBy(i => i).ToArray();
        var values = new double[n];
        var vectors = new double[n * n];
        for (int r = 0; r < n; r++)
        {
            int col = order[r];
            values[r] = diag[col];
            Array.Copy(qt, col * n, vectors, r * n, n);
        }
        return (values, vectors);
    }

    // A = Q T Qᵀ with T tridiagonal, by Householder reflections H = I − β v vᵀ applied as a symmetric rank-2 update.
    private static void Tridiagonalize(double[] a, int n, double[] qt, double[] diag, double[] off, CancellationToken cancellation)
    {
        var v = new double[n];
        var p = new double[n];
        for (int k = 0; k < n - 2; k++)
        {
            cancellation.ThrowIfCancellationRequested();
            int start = k + 1, len = n - start;
            double norm = 0;
            for (int i = 0; i < len; i++)
                norm += a[(start + i) * n + k] * a[(start + i) * n + k];
            norm = Math.Sqrt(norm);
            if (norm == 0)
                continue;
            double x0 = a[start * n + k];
            double alpha = x0 >= 0 ? -norm : norm;
            for (int i = 0; i < len; i++)
                v[i] = a[(start + i) * n + k];
            v[0] = x0 - alpha;
            double vv = 0;
            for (int i = 0; i < len; i++)
                vv += v[i] * v[i];
            if (vv == 0)
                continue;
            double beta = 2 / vv;

            // p = β S v and w = p − (β/2)(pᵀv) v on the trailing block S; then S ← S − v wᵀ − w vᵀ.
            Parallel.For(0, len, i =>
            {
                double s = 0;
                int row = (start + i) * n + start;
                for (int j = 0; j < len; j++)
                    s += a[row + j] * v[j];
                p[i] = beta * s;
            });
            double pv = 0;
            for (int i = 0; i < len; i++)
                pv += p[i] * v[i];
            double half = 0.5 * beta * pv;
            for (int i = 0; i < len; i++)
                p[i] -= half * v[i];
            Parallel.For(0, len, i =>
            {
                int row = (start + i) * n + start;
                double vi = v[i], wi = p[i];
                for (int j = 0; j < len; j++)
                    a[row + j] -= vi * p[j] + wi * v[j];
            });
            a[start * n + k] = a[k * n + start] = alpha;
            for (int i = 1; i < len; i++)
                a[(start + i) * n + k] = a[k * n + start + i] = 0;

            // Qᵀ ← H Qᵀ (qt holds Qᵀ, so every update runs along contiguous rows).
            var t = new double[n];
            for (int i = 0; i < len; i++)
            {
                int row = (start + i) * n;
                double vi = v[i];
                for (int col = 0; col < n; col++)
                    t[col] += vi * qt[row + col];
            }
            Parallel.For(0, len, i =>
            {
                int row = (start + i) * n;
                double bv = beta * v[i];
                for (int col = 0; col < n; col++)
                    qt[row + col] -= bv * t[col];
            });
        }
        for (int i = 0; i < n; i++)
            diag[i] = a[i * n + i];
        for (int i = 0; i < n - 1; i++)
            off[i] = a[(i + 1) * n + i];
    }

    // Implicit symmetric QR on the tridiagonal (diag, off), chasing the bulge with Givens rotations J (T ← J T Jᵀ, Qᵀ ← J Qᵀ).
    private static void DiagonalizeTridiagonal(double[] d, double[] e, double[] qt, int n, CancellationToken cancellation)
    {
        int maxSteps = 60 * Math.Max(n, 1);
        int steps = 0;
        int end = n - 1;
        while (end > 0)
        {
            if (Math.Abs(e[end - 1]) <= 1e-15 * (Math.Abs(d[end - 1]) + Math.Abs(d[end])) || e[end - 1] == 0)
            {
                e[end - 1] = 0;
                end--;
                continue;
            }
            int begin = end - 1;
            while (begin > 0 && Math.Abs(e[begin - 1]) > 1e-15 * (Math.Abs(d[begin - 1]) + Math.Abs(d[begin])))
                begin--;
            cancellation.ThrowIfCancellationRequested();
            if (++steps > maxSteps)
                throw new InvalidOperationException($"The symmetric eigen-decomposition of a {n}×{n} matrix did not converge; the matrix may hold NaN or infinite values.");

            double delta = (d[end - 1] - d[end]) / 2;
            double bb = e[end - 1] * e[end - 1];
            double mu = d[end] - bb / (delta + (delta >= 0 ? 1 : -1) * Math.Sqrt(delta * delta + bb));
            double x = d[begin] - mu;
            double z = e[begin];
            for (int k = begin; k < end; k++)
            {
                double r = Math.Sqrt(x * x + z * z);
                double c = r == 0 ? 1 : x / r;
                double s = r == 0 ? 0 : z / r;
                if (k > begin)
                    e[k - 1] = r;
                double ap = d[k], aq = d[k + 1], bp = e[k];
                d[k] = c * c * ap + 2 * c * s * bp + s * s * aq;
                d[k + 1] = s * s * ap - 2 * c * s * bp + c * c * aq;
                e[k] = c * s * (aq - ap) + (c * c - s * s) * bp;
                if (k + 1 < end)
                {
                    z = s * e[k + 1];
                    e[k + 1] *= c;
                    x = e[k];
                }
                var rowK = qt.AsSpan(k * n, n);
                var rowK1 = qt.AsSpan((k + 1) * n, n);
                for (int col = 0; col < n; col++)
                {
                    double qp = rowK[col], qq = rowK1[col];
                    rowK[col] = c * qp + s * qq;
                    rowK1[col] = -s * qp + c * qq;
                }
            }
        }
    }
}
