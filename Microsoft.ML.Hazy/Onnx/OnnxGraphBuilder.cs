using System.Runtime.InteropServices;
using Google.Protobuf;
using Microsoft.ML.Hazy.Onnx.Proto;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Onnx;

/// <summary>Element types an exported graph's inputs, outputs and initializers use.</summary>
internal enum OnnxElementType
{
    Float = TensorProto.Types.DataType.Float,
    Int32 = TensorProto.Types.DataType.Int32,
    Int64 = TensorProto.Types.DataType.Int64,
    String = TensorProto.Types.DataType.String,
    Bool = TensorProto.Types.DataType.Bool,
    Double = TensorProto.Types.DataType.Double,
    UInt32 = TensorProto.Types.DataType.Uint32,
}

/// <summary>
/// Writes an ONNX model one node at a time. Values are named by the builder, so exporters compose
/// without knowing each other's names: every method returns the name of the value it produced.
/// </summary>
internal sealed class OnnxGraphBuilder
{
    /// <summary>The opset every Hazy graph targets: the first with LayerNormalization and DFT.</summary>
    public const int DefaultOpset = 17;

    /// <summary>The symbolic name of the leading (batch) dimension.</summary>
    public const string BatchDimension = "batch";

    private readonly GraphProto _graph;
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _counters = new(StringComparer.Ordinal);
    private readonly Dictionary<(long, string), string> _scalarCache = new();

    public OnnxGraphBuilder(string graphName, int opset = DefaultOpset)
    {
        _graph = new GraphProto { Name = graphName };
        Opset = opset;
    }

    public int Opset { get; }

    /// <summary>Declares a graph input; a null dimension is symbolic (the batch, or a length).</summary>
    public string AddInput(string name, OnnxElementType type, params long?[] dims)
    {
        Reserve(name);
        _graph.Input.Add(ValueInfo(name, type, dims));
        return name;
    }

    /// <summary>Declares <paramref name="value"/> as the graph output <paramref name="name"/>.</summary>
    public void AddOutput(string value, string name, OnnxElementType type, params long?[] dims)
    {
        if (value != name)
        {
            Reserve(name);
            _graph.Node.Add(new NodeProto { OpType = "Identity", Name = UniqueName("Identity"), Input = { value }, Output = { name } });
        }
        _graph.Output.Add(ValueInfo(name, type, dims));
    }

    /// <summary>Adds a float32 constant holding a copy of <paramref name="tensor"/>.</summary>
    public string AddInitializer(string hint, Tensor tensor)
    {
        using var t = tensor.detach().cpu().to(ScalarType.Float32).contiguous();
        return AddInitializer(hint, t.data<float>().ToArray(), t.shape);
    }

    public string AddInitializer(string hint, float[] values, params long[] dims) =>
        AddRaw(hint, TensorProto.Types.DataType.Float, MemoryMarshal.AsBytes(values.AsSpan()), dims);

    public string AddInitializer(string hint, long[] values, params long[] dims) =>
        AddRaw(hint, TensorProto.Types.DataType.Int64, MemoryMarshal.AsBytes(values.AsSpan()), dims);

    public string AddInitializer(string hint, int[] values, params long[] dims) =>
        AddRaw(hint, TensorProto.Types.DataType.Int32, MemoryMarshal.AsBytes(values.AsSpan()), dims);

    public string AddInitializer(string hint, uint[] values, params long[] dims) =>
        AddRaw(hint, TensorProto.Types.DataType.Uint32, MemoryMarshal.AsBytes(values.AsSpan()), dims);

    public string AddInitializer(string hint, double[] values, params long[] dims) =>
        AddRaw(hint, TensorProto.Types.DataType.Double, MemoryMarshal.AsBytes(values.AsSpan()), dims);

    public string AddInitializer(string hint, bool[] values, params long[] dims) =>
        AddRaw(hint, TensorProto.Types.DataType.Bool, MemoryMarshal.AsBytes(values.AsSpan()), dims);

    public string AddInitializer(string hint, string[] values, params long[] dims)
    {
        var name = UniqueName(hint);
        var proto = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.String };
        proto.Dims.AddRange(dims);
        foreach (var v in values)
            proto.StringData.Add(ByteString.CopyFromUtf8(v));
        _graph.Initializer.Add(proto);
        return name;
    }

    /// <summary>A 1-D int64 constant (shapes, axes, indices), shared between uses.</summary>
    public string Int64s(params long[] values)
    {
        var key = (values.Length, string.Join(",", values));
        if (!_scalarCache.TryGetValue(key, out var name))
        {
            name = AddInitializer("const_i64", values, values.Length);
            _scalarCache[key] = name;
        }
        return name;
    }

    /// <summary>A float32 scalar constant, shared between uses.</summary>
    public string Scalar(float value)
    {
        var key = (-1L, value.ToString("R", System.Globalization.CultureInfo.InvariantCulture));
        if (!_scalarCache.TryGetValue(key, out var name))
        {
            name = AddInitializer("const_f32", new[] { value });
            _scalarCache[key] = name;
        }
        return name;
    }

    /// <summary>Adds a node with one output and returns that output's name.</summary>
    public string Node(string opType, IReadOnlyList<string> inputs, params OnnxAttribute[] attributes) =>
        Node(opType, inputs, 1, attributes)[0];

    /// <summary>Adds a node with <paramref name="outputCount"/> outputs and returns their names.</summary>
    public string[] Node(string opType, IReadOnlyList<string> inputs, int outputCount, params OnnxAttribute[] attributes)
    {
        var node = new NodeProto { OpType = opType, Name = UniqueName(opType) };
        node.Input.AddRange(inputs);
        var outputs = new string[outputCount];
        for (int i = 0; i < outputCount; i++)
        {
            outputs[i] = UniqueName(opType + "_out");
            node.Output.Add(outputs[i]);
        }
        foreach (var a in attributes)
            node.Attribute.Add(a.Proto);
        _graph.Node.Add(node);
        return outputs;
    }

    /// <summary>Serializes the model.</summary>
    public byte[] ToBytes(string docString = "")
    {
        var model = new ModelProto
        {
            IrVersion = 8,
            ProducerName = "Microsoft.ML.Hazy",
            ProducerVersion = typeof(OnnxGraphBuilder).Assembly.GetName().Version?.ToString() ?? "0",
            ModelVersion = 1,
            DocString = docString,
            Graph = _graph,
        };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = Opset });
        return model.ToByteArray();
    }

    private string AddRaw(string hint, TensorProto.Types.DataType type, ReadOnlySpan<byte> bytes, long[] dims)
    {
        var name = UniqueName(hint);
        var proto = new TensorProto { Name = name, DataType = (int)type, RawData = ByteString.CopyFrom(bytes) };
        proto.Dims.AddRange(dims);
        _graph.Initializer.Add(proto);
        return name;
    }

    private static ValueInfoProto ValueInfo(string name, OnnxElementType type, long?[] dims)
    {
        var shape = new TensorShapeProto();
        for (int i = 0; i < dims.Length; i++)
        {
            var d = new TensorShapeProto.Types.Dimension();
            if (dims[i] is long v)
                d.DimValue = v;
            else
                d.DimParam = i == 0 ? BatchDimension : $"d{i}";
            shape.Dim.Add(d);
        }
        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = shape } },
        };
    }

    private void Reserve(string name)
    {
        if (!_names.Add(name))
            throw new InvalidOperationException($"The ONNX value name '{name}' is already used in this graph.");
    }

    private string UniqueName(string hint)
    {
        _counters.TryGetValue(hint, out int n);
        string name;
        do
        {
            name = n == 0 ? hint : $"{hint}_{n}";
            n++;
        } while (_names.Contains(name));
        _counters[hint] = n;
        _names.Add(name);
        return name;
    }
}

/// <summary>A node attribute.</summary>
internal readonly struct OnnxAttribute
{
    private OnnxAttribute(AttributeProto proto) => Proto = proto;

    public AttributeProto Proto { get; }

    public static OnnxAttribute Int(string name, long value) =>
        new(new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value });

    public static OnnxAttribute Float(string name, float value) =>
        new(new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = value });

    public static OnnxAttribute String(string name, string value) =>
        new(new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.String, S = ByteString.CopyFromUtf8(value) });

    public static OnnxAttribute Ints(string name, params long[] values)
    {
        var p = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        p.Ints.AddRange(values);
        return new(p);
    }
}
