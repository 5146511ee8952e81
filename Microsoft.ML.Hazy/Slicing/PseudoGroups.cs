using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Data;

namespace Microsoft.ML.Hazy.Slicing;

/// <summary>
/// Pseudo-groups for group-robust training when true groups are not annotated: each class's embeddings are clustered
/// separately (k-means, k per class chosen by the silhouette score unless fixed), and every (class, cluster) pair is a group.
/// This is the GEORGE recipe (Sohoni et al., NeurIPS 2020) that "Perfectly Balanced" applies to its embeddings, without
/// GEORGE's UMAP reduction. Train with <c>Microsoft.ML.Hazy.Robustness.GroupDroOptions</c> on <see cref="Data"/>.
/// </summary>
public sealed class PseudoGroups
{
    internal PseudoGroups(IDataView data, string columnName, int[] groups, string[] names, int[] clustersPerClass)
    {
        Data = data;
        ColumnName = columnName;
        _groups = groups;
        GroupNames = Array.AsReadOnly(names);
        ClustersPerClass = Array.AsReadOnly(clustersPerClass);
    }

    private readonly int[] _groups;

    /// <summary>The input data with the group column appended: a key whose values are "class/cluster" (read in order; it cannot shuffle).</summary>
    public IDataView Data { get; }

    /// <summary>The appended column's name.</summary>
    public string ColumnName { get; }

    /// <summary>Group names, in key order: the class name, a slash, the cluster index within the class.</summary>
    public IReadOnlyList<string> GroupNames { get; }

    /// <summary>Clusters (groups) found in each class, in class order.</summary>
    public IReadOnlyList<int> ClustersPerClass { get; }

    /// <summary>The 0-based group of each row, in row order.</summary>
    public IReadOnlyList<int> Groups => Array.AsReadOnly(_groups);

    internal static PseudoGroups Propose(IDataView data, string embeddingColumn, string labelColumn, string outputColumn,
        int clustersPerClass, int maximumClustersPerClass, int seed)
    {
        ArgumentNullException.ThrowIfNull(data);
        if (clustersPerClass < 0)
            throw new ArgumentOutOfRangeException(nameof(clustersPerClass), clustersPerClass, "Must be 0 (chosen by the silhouette score) or positive.");
        if (maximumClustersPerClass < 1)
            throw new ArgumentOutOfRangeException(nameof(maximumClustersPerClass), maximumClustersPerClass, "Must be at least 1.");
        var embedding = data.Schema.GetColumnOrNull(embeddingColumn)
            ?? throw new ArgumentOutOfRangeException(nameof(embeddingColumn), $"Column '{embeddingColumn}' (the embedding) not found; expected a known-size vector of Single.");
        if (embedding.Type is not VectorDataViewType { ItemType: NumberDataViewType ft, Size: > 0 } vector || ft != NumberDataViewType.Single)
            throw new ArgumentOutOfRangeException(nameof(embeddingColumn), $"Column '{embeddingColumn}' (the embedding) has type {embedding.Type}; expected a known-size vector of Single.");
        var label = data.Schema.GetColumnOrNull(labelColumn)
            ?? throw new ArgumentOutOfRangeException(nameof(labelColumn), $"Column '{labelColumn}' (the label) not found; expected a key.");
        if (label.Type is not KeyDataViewType key || key.Count == 0 || key.Count > int.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(labelColumn), $"Column '{labelColumn}' (the label) has type {label.Type}; expected a key (use MapValueToKey).");
        int d = vector.Size, classes = (int)key.Count;
        var classNames = LabelKeyValues.FromColumn(label).Names();

        var rows = new List<(float[] X, int Class)>();
        using (var cursor = data.GetRowCursor(new[] { embedding, label }))
        {
            var getX = cursor.GetGetter<VBuffer<float>>(embedding);
            var getY = cursor.GetGetter<uint>(label);
            VBuffer<float> x = default;
            uint y = 0;
            while (cursor.MoveNext())
            {
                getY(ref y);
                if (y == 0)
                    throw new InvalidDataException($"Row {cursor.Position}: column '{labelColumn}' (the label) is missing; every row needs a class.");
                getX(ref x);
                var values = x.DenseValues().ToArray();
                if (values.Any(v => !float.IsFinite(v)))
                    throw new InvalidDataException($"Row {cursor.Position}: column '{embeddingColumn}' (the embedding) holds NaN or an infinity.");
                rows.Add((values, (int)y - 1));
            }
        }
        if (rows.Count == 0)
            throw new ArgumentException("The data has no rows to cluster.", nameof(data));

        var random = new Random(seed);
        var groups = new int[rows.Count];
        var groupNames = new List<string>();
        var perClass = new int[classes];
        for (int c = 0; c < classes; c++)
        {
            var members = Enumerable.Range(0, rows.Count).Where(i => rows[i].Class == c).ToArray();
            if (members.Length == 0)
                continue;
            var x = new double[(long)members.Length * d];
            for (int r = 0; r < members.Length; r++)
                for (int j = 0; j < d; j++)
                    x[(long)r * d + j] = rows[members[r]].X[j];
            var (k, assignment) = clustersPerClass > 0
                ? Fixed(x, members.Length, d, Math.Min(clustersPerClass, members.Length), random)
                : BySilhouette(x, members.Length, d, maximumClustersPerClass, random);
            for (int r = 0; r < members.Length; r++)
                groups[members[r]] = groupNames.Count + assignment[r];
            for (int s = 0; s < k; s++)
                groupNames.Add($"{classNames[c]}/{s}");
            perClass[c] = k;
        }
        var keys = Array.ConvertAll(groups, g => (uint)(g + 1));
        return new PseudoGroups(new AppendedKeyDataView(data, outputColumn, keys, groupNames.ToArray()), outputColumn, groups, groupNames.ToArray(), perClass);
    }

    private static (int K, int[] Assignment) Fixed(double[] x, int n, int d, int k, Random random)
    {
        var assignment = Compact(KMeans.Cluster(x, n, d, k, random), k, out int used);
        return (used, assignment);
    }

    /// <summary>Renumbers clusters 0 … used−1 in order of first appearance (k-means can leave a cluster empty).</summary>
    private static int[] Compact(int[] assignment, int k, out int used)
    {
        var map = Enumerable.Repeat(-1, k).ToArray();
        used = 0;
        var result = new int[assignment.Length];
        for (int i = 0; i < assignment.Length; i++)
        {
            if (map[assignment[i]] < 0)
                map[assignment[i]] = used++;
            result[i] = map[assignment[i]];
        }
        return result;
    }

    /// <summary>k in 2 … max with the highest mean silhouette (on at most 1,000 rows); 1 when no k reaches 0.25 or too few rows.</summary>
    private static (int K, int[] Assignment) BySilhouette(double[] x, int n, int d, int max, Random random)
    {
        var best = (K: 1, Assignment: new int[n], Score: 0.25);
        for (int k = 2; k <= Math.Min(max, n / 2); k++)
        {
            var assignment = Compact(KMeans.Cluster(x, n, d, k, random), k, out int used);
            if (used < 2)
                continue;
            double score = Silhouette(x, n, d, assignment, used, random);
            if (score > best.Score)
                best = (used, assignment, score);
        }
        return (best.K, best.Assignment);
    }

    /// <summary>The mean silhouette (b − a)/max(a, b) over a sample of at most 1,000 rows (Rousseeuw, 1987).</summary>
    internal static double Silhouette(double[] x, int n, int d, int[] assignment, int k, Random random)
    {
        var sample = n <= 1000 ? Enumerable.Range(0, n).ToArray() : Enumerable.Range(0, n).OrderBy(_ => random.Next()).Take(1000).OrderBy(i => i).ToArray();
        double total = 0;
        var sums = new double[k];
        var counts = new int[k];
        foreach (int i in sample)
        {
            Array.Clear(sums);
            Array.Clear(counts);
            foreach (int j in sample)
            {
                if (j == i)
                    continue;
                double s = 0;
                for (int t = 0; t < d; t++)
                {
                    double diff = x[(long)i * d + t] - x[(long)j * d + t];
                    s += diff * diff;
                }
                sums[assignment[j]] += Math.Sqrt(s);
                counts[assignment[j]]++;
            }
            int own = assignment[i];
            if (counts[own] == 0)
                continue;
            double a = sums[own] / counts[own], b = double.PositiveInfinity;
            for (int c = 0; c < k; c++)
                if (c != own && counts[c] > 0)
                    b = Math.Min(b, sums[c] / counts[c]);
            if (double.IsFinite(b) && Math.Max(a, b) > 0)
                total += (b - a) / Math.Max(a, b);
        }
        return total / sample.Length;
    }
}
