using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Heads;
using System.Globalization;
using System.IO.Compression;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Onnx;
using Microsoft.ML.Hazy.Training;

namespace Microsoft.ML.Hazy.Persistence;

/// <summary>
/// The TorchSharp weights a saved model may carry next to what ML.NET writes: for every Hazy model in the saved tree, a
/// folder <c>Hazy/Networks/NNN/</c> in the zip with <c>Model.json</c> (where the model sits in the tree, its task, columns,
/// row shape, labels, training history and the network's recipe) and <c>Weights.bin</c> (the network's state dict).
/// ML.NET's loader reads only the entries it wrote and ignores these, so the file still loads with plain
/// <c>mlContext.Model.Load</c>; <c>mlContext.Hazy().LoadModel</c> also restores the Hazy models with their networks.
/// </summary>
internal static class ModelArchive
{
    /// <summary>The zip folder of the networks.</summary>
    public const string Folder = "Hazy/Networks/";

    private const string ModelEntry = "Model.json";
    private const string WeightsEntry = "Weights.bin";
    private const int FormatVersion = 1;

    // A fixed time stamp, so saving the same model twice writes the same entries.
    private static readonly DateTimeOffset _timeStamp = new(1980, 1, 1, 0, 0, 0, TimeSpan.Zero);

    private static readonly Type[] _labelValueTypes =
    [
        typeof(string), typeof(bool), typeof(sbyte), typeof(byte), typeof(short), typeof(ushort), typeof(int), typeof(uint),
        typeof(long), typeof(ulong), typeof(float), typeof(double),
    ];

    /// <summary>
    /// Writes <paramref name="model"/> as <see cref="ModelOperationsCatalog.Save(ITransformer, DataViewSchema, Stream)"/> does, plus the
    /// networks of the Hazy models in it. Everything that can fail (a network without a recipe) fails before a byte is written.
    /// </summary>
    public static void Save(ModelOperationsCatalog catalog, ITransformer model, DataViewSchema? inputSchema, Stream destination)
    {
        var found = new List<(int[] Path, HazyPredictionTransformer Model)>();
        Find(model, [], found);
        var entries = found.Select(f => (Describe(f.Path, f.Model), NetworkRegistry.Weights(f.Model.Network))).ToArray();

        byte[] saved;
        using (var plain = new MemoryStream())
        {
            catalog.Save(model, inputSchema, plain);
            saved = plain.ToArray();
        }

        using var archive = new MemoryStream();
        archive.Write(saved);
        using (var zip = new ZipArchive(archive, ZipArchiveMode.Update, leaveOpen: true))
        {
            for (int i = 0; i < entries.Length; i++)
            {
                string folder = Folder + i.ToString("D3", CultureInfo.InvariantCulture) + "/";
                Write(zip, folder + ModelEntry, entries[i].Item1);
                Write(zip, folder + WeightsEntry, entries[i].Item2);
            }
        }
        destination.Write(archive.GetBuffer(), 0, (int)archive.Length);
    }

    /// <summary>
    /// <paramref name="loaded"/> (what ML.NET loaded from <paramref name="filePath"/>) with each saved Hazy model's scoring chain
    /// replaced by a <see cref="HazyPredictionTransformer"/> that builds its network from the file's weights on first use;
    /// <paramref name="loaded"/> itself when the file carries no weights.
    /// </summary>
    /// <exception cref="InvalidDataException">The weights entries are malformed or do not match the loaded model.</exception>
    public static ITransformer Restore(ITransformer loaded, string filePath)
    {
        using var zip = ZipFile.OpenRead(filePath);
        var folders = zip.Entries.Where(e => e.FullName.StartsWith(Folder, StringComparison.Ordinal) && e.Name == ModelEntry)
            .Select(e => e.FullName[..^ModelEntry.Length]).Order(StringComparer.Ordinal).ToArray();
        foreach (var folder in folders)
        {
            var source = $"Model file '{filePath}', entry '{folder}'";
            var record = Read(zip, folder + ModelEntry, source);
            var weights = ReadBytes(zip, folder + WeightsEntry, source);
            var path = record.Path!;
            loaded = Replace(loaded, path, 0, node => node is TransformerChain<ITransformer> chain
                ? record.CreateModel(chain, weights, source)
                : throw new InvalidDataException($"{source}: the model at [{string.Join(", ", path)}] is a {node.GetType().Name}, not the scoring chain of a Hazy model."),
                source);
        }
        return loaded;
    }

    /// <summary>The Hazy models in the tree and their paths (child indices through nested chains).</summary>
    private static void Find(ITransformer node, int[] path, List<(int[], HazyPredictionTransformer)> found)
    {
        if (node is HazyPredictionTransformer hazy)
        {
            found.Add((path, hazy));
            return;
        }
        if (IsChain(node))
        {
            int i = 0;
            foreach (var child in (IEnumerable<ITransformer>)node)
                Find(child, [.. path, i++], found);
        }
    }

    private static bool IsChain(ITransformer node) =>
        node is IEnumerable<ITransformer> && node.GetType() is { IsGenericType: true } t && t.GetGenericTypeDefinition() == typeof(TransformerChain<>);

    /// <summary>The tree with the node at <paramref name="path"/> replaced; each chain on the way is rebuilt with its scopes.</summary>
    private static ITransformer Replace(ITransformer node, int[] path, int depth, Func<ITransformer, ITransformer> replace, string source)
    {
        if (depth == path.Length)
            return replace(node);
        if (!IsChain(node))
            throw new InvalidDataException($"{source}: the loaded model has no chain at [{string.Join(", ", path[..depth])}].");
        var children = ((IEnumerable<ITransformer>)node).ToArray();
        if (path[depth] < 0 || path[depth] >= children.Length)
            throw new InvalidDataException($"{source}: the loaded chain at [{string.Join(", ", path[..depth])}] has {children.Length} transformers; no index {path[depth]}.");
        var scopes = ScopesOf(node, children);
        children[path[depth]] = Replace(children[path[depth]], path, depth + 1, replace, source);
        return new TransformerChain<ITransformer>(children, scopes);
    }

    /// <summary>Each transformer's scope, read through the public <c>GetModelFor</c>: a transformer belongs to each scope whose chain holds it.</summary>
    private static TransformerScope[] ScopesOf(ITransformer chain, ITransformer[] children)
    {
        var getModelFor = chain.GetType().GetMethod(nameof(TransformerChain<ITransformer>.GetModelFor))!;
        var scopes = new TransformerScope[children.Length];
        foreach (var scope in new[] { TransformerScope.Training, TransformerScope.Testing, TransformerScope.Scoring })
        {
            var members = ((IEnumerable<ITransformer>)getModelFor.Invoke(chain, [scope])!).ToHashSet(ReferenceEqualityComparer.Instance);
            for (int i = 0; i < children.Length; i++)
            {
                if (members.Contains(children[i]))
                    scopes[i] |= scope;
            }
        }
        return scopes;
    }

    private static byte[] Describe(int[] path, HazyPredictionTransformer model)
    {
        var recipe = NetworkRegistry.RecipeOf(model.Network);
        var record = new ModelRecord
        {
            Version = FormatVersion,
            Path = path,
            Kind = model.Kind,
            FeatureColumnName = model.FeatureColumnName,
            RowShape = model.RowShape.ToArray(),
            Seed = model.Seed,
            Sequence = model.Sequence is { } s ? new SequenceRecord(s.Channels, s.Length, s.PaddedValues) : null,
            Labels = model.Labels is { } l ? LabelsRecord.From(l) : null,
            Embedding = model.Head is EmbeddingHead e ? new EmbeddingRecord(e.Size, e.Normalize, e.ColumnName) : null,
            History = model.TrainingHistory.ToArray(),
            NetworkKind = recipe.Kind,
            Network = JsonNode.Parse(recipe.Arguments)!,
        };
        return JsonSerializer.SerializeToUtf8Bytes(record, _json);
    }

    private static readonly JsonSerializerOptions _json = new(NetworkRecipe.Json) { WriteIndented = true };

    private static void Write(ZipArchive zip, string name, byte[] bytes)
    {
        var entry = zip.CreateEntry(name, CompressionLevel.Optimal);
        entry.LastWriteTime = _timeStamp;
        using var stream = entry.Open();
        stream.Write(bytes);
    }

    private static ModelRecord Read(ZipArchive zip, string name, string source)
    {
        ModelRecord? record;
        try
        {
            record = JsonSerializer.Deserialize<ModelRecord>(ReadBytes(zip, name, source), _json);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{source}: {ModelEntry} does not read ({e.Message}).", e);
        }
        if (record is null || record.Version != FormatVersion || record.Path is null || record.FeatureColumnName is null || record.RowShape is null
            || record.NetworkKind is null || record.Network is null)
            throw new InvalidDataException($"{source}: {ModelEntry} is incomplete or of format version {record?.Version}; expected version {FormatVersion}.");
        return record;
    }

    private static byte[] ReadBytes(ZipArchive zip, string name, string source)
    {
        var entry = zip.GetEntry(name) ?? throw new InvalidDataException($"{source}: the entry '{name}' is missing.");
        using var stream = entry.Open();
        using var memory = new MemoryStream();
        stream.CopyTo(memory);
        return memory.ToArray();
    }

    private sealed class ModelRecord
    {
        public int Version { get; set; }
        public int[]? Path { get; set; }
        public PredictionKind Kind { get; set; }
        public string? FeatureColumnName { get; set; }
        public long[]? RowShape { get; set; }
        public int Seed { get; set; }
        public SequenceRecord? Sequence { get; set; }
        public LabelsRecord? Labels { get; set; }
        public EmbeddingRecord? Embedding { get; set; }
        public TrainingEpoch[]? History { get; set; }
        public string? NetworkKind { get; set; }
        public JsonNode? Network { get; set; }

        public HazyPredictionTransformer CreateModel(TransformerChain<ITransformer> scoringChain, byte[] weights, string source)
        {
            var recipe = new NetworkRecipe(NetworkKind!, Network!.ToJsonString());
            var layout = Sequence is { } s ? new SequenceLayout(s.Channels, s.Length, s.PaddedValues) : null;
            var head = Embedding is { } e ? new EmbeddingHead(e.Size, e.Normalize, e.ColumnName) : OutputHead.For(Kind, Labels?.ToKeyValues(source));
            return new HazyPredictionTransformer(scoringChain, () => NetworkRegistry.Restore(recipe, weights, source), head, FeatureColumnName!, RowShape!,
                History ?? [], Seed, layout);
        }
    }

    private sealed record EmbeddingRecord(int Size, bool Normalize, string ColumnName);

    private sealed record SequenceRecord(int Channels, int Length, int PaddedValues);

    /// <summary>The label's key values as invariant strings of one of the primitive types ML.NET keys carry.</summary>
    private sealed record LabelsRecord(int Count, string? ValueType, string[]? Values)
    {
        public static LabelsRecord From(LabelKeyValues labels)
        {
            if (labels.ValueType is null || labels.Values is null)
                return new LabelsRecord(labels.Count, null, null);
            if (!_labelValueTypes.Contains(labels.ValueType))
                throw new NotSupportedException($"Label values of type {labels.ValueType.Name} cannot be saved with the weights.");
            var values = labels.Values.Cast<object>().Select(v => Convert.ToString(v, CultureInfo.InvariantCulture) ?? "").ToArray();
            return new LabelsRecord(labels.Count, labels.ValueType.FullName, values);
        }

        public LabelKeyValues ToKeyValues(string source)
        {
            if (ValueType is null || Values is null)
                return LabelKeyValues.Unnamed(Count);
            var type = _labelValueTypes.FirstOrDefault(t => t.FullName == ValueType)
                ?? throw new InvalidDataException($"{source}: label values of type '{ValueType}' are not supported.");
            var values = Array.CreateInstance(type, Values.Length);
            for (int i = 0; i < Values.Length; i++)
                values.SetValue(Convert.ChangeType(Values[i], type, CultureInfo.InvariantCulture), i);
            var fromValues = typeof(LabelKeyValues).GetMethod(nameof(LabelKeyValues.FromValues))!.MakeGenericMethod(type);
            return (LabelKeyValues)fromValues.Invoke(null, [values])!;
        }
    }
}
