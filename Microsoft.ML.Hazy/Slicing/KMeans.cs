namespace Microsoft.ML.Hazy.Slicing;

/// <summary>Lloyd's k-means with k-means++ seeding, for the mixture's <c>kmeans</c> initialisation.</summary>
internal static class KMeans
{
    /// <summary>The cluster of each of the <paramref name="n"/> rows of <paramref name="x"/> (row-major, <paramref name="d"/> columns).</summary>
    public static int[] Cluster(double[] x, int n, int d, int k, Random random, int maxIterations = 300, double tolerance = 1e-4)
    {
        var centers = new double[k * d];
        var nearest = new double[n];
        int first = random.Next(n);
        Array.Copy(x, (long)first * d, centers, 0, d);
        for (int i = 0; i < n; i++)
            nearest[i] = SquaredDistance(x, i * d, centers, 0, d);

        // k-means++: each next center is drawn with probability proportional to the squared distance to the chosen ones.
        for (int c = 1; c < k; c++)
        {
            double total = 0;
            for (int i = 0; i < n; i++)
                total += nearest[i];
            int pick;
            if (total <= 0)
            {
                pick = random.Next(n);
            }
            else
            {
                double u = random.NextDouble() * total, acc = 0;
                pick = n - 1;
                for (int i = 0; i < n; i++)
                {
                    acc += nearest[i];
                    if (acc >= u && nearest[i] > 0)
                    {
                        pick = i;
                        break;
                    }
                }
            }
            Array.Copy(x, (long)pick * d, centers, (long)c * d, d);
            for (int i = 0; i < n; i++)
                nearest[i] = Math.Min(nearest[i], SquaredDistance(x, i * d, centers, c * d, d));
        }

        // The convergence threshold scales with the data's mean per-feature variance, as in scikit-learn.
        double varianceSum = 0;
        for (int j = 0; j < d; j++)
        {
            double m = 0, s = 0;
            for (int i = 0; i < n; i++)
                m += x[(long)i * d + j];
            m /= n;
            for (int i = 0; i < n; i++)
            {
                double t = x[(long)i * d + j] - m;
                s += t * t;
            }
            varianceSum += s / n;
        }
        double threshold = tolerance * varianceSum / d;

        var labels = new int[n];
        var sums = new double[k * d];
        var counts = new int[k];
        for (int iteration = 0; iteration < maxIterations; iteration++)
        {
            Parallel.For(0, n, i =>
            {
                int best = 0;
                double bestDistance = double.PositiveInfinity;
                for (int c = 0; c < k; c++)
                {
                    double dist = SquaredDistance(x, i * d, centers, c * d, d);
                    if (dist < bestDistance)
                    {
                        bestDistance = dist;
                        best = c;
                    }
                }
                labels[i] = best;
                nearest[i] = bestDistance;
            });
            Array.Clear(sums);
            Array.Clear(counts);
            for (int i = 0; i < n; i++)
            {
                int c = labels[i];
                counts[c]++;
                for (int j = 0; j < d; j++)
                    sums[c * d + j] += x[(long)i * d + j];
            }
            double shift = 0;
            for (int c = 0; c < k; c++)
            {
                if (counts[c] == 0)
                {
                    // An empty cluster takes the row farthest from its center.
                    int far = 0;
                    for (int i = 1; i < n; i++)
                        if (nearest[i] > nearest[far])
                            far = i;
                    nearest[far] = 0;
                    for (int j = 0; j < d; j++)
                    {
                        double t = x[(long)far * d + j] - centers[c * d + j];
                        shift += t * t;
                        centers[c * d + j] = x[(long)far * d + j];
                    }
                    continue;
                }
                for (int j = 0; j < d; j++)
                {
                    double updated = sums[c * d + j] / counts[c];
                    double t = updated - centers[c * d + j];
                    shift += t * t;
                    centers[c * d + j] = updated;
                }
            }
            if (shift <= threshold)
                break;
        }
        Parallel.For(0, n, i =>
        {
            int best = 0;
            double bestDistance = double.PositiveInfinity;
            for (int c = 0; c < k; c++)
            {
                double dist = SquaredDistance(x, i * d, centers, c * d, d);
                if (dist < bestDistance)
                {
                    bestDistance = dist;
                    best = c;
                }
            }
            labels[i] = best;
        });
        return labels;
    }

    private static double SquaredDistance(double[] a, long ai, double[] b, long bi, int d)
    {
        double distance = System.Numerics.Tensors.TensorPrimitives.Distance<double>(a.AsSpan((int)ai, d), b.AsSpan((int)bi, d));
        return distance * distance;
    }
}
