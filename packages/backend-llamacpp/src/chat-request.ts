/**
 * OpenAI chat messages to node-llama-cpp's chat history, which the model's own chat template
 * then renders. Text only: tool calling, images and audio are refused with a 400.
 */
import type { ChatCompletionRequest } from '@tollgate/protocol';
import type { ChatHistoryItem } from 'node-llama-cpp';
import { invalid } from './params.js';

type Message = ChatCompletionRequest['messages'][number];

/** The text of a message: a string, or its text parts joined with newlines (as llama-server does). */
function messageText(message: Message, param: string): string {
  const { content } = message;
  if (content === undefined || content === null) return '';
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) {
    throw invalid('A message "content" must be a string or an array of text parts.', param);
  }
  const texts: string[] = [];
  content.forEach((part, index) => {
    const partParam = `${param}[${index}]`;
    if (part?.type !== 'text') {
      throw invalid(
        `This backend takes text only: a "${String(part?.type)}" content part cannot be sent to it.`,
        `${partParam}.type`,
      );
    }
    if (typeof part.text !== 'string') {
      throw invalid('A "text" content part needs a string "text".', `${partParam}.text`);
    }
    texts.push(part.text);
  });
  return texts.join('\n');
}

/**
 * Turns OpenAI messages into a chat history that ends with the model's turn: an empty one
 * after a user or system message, or the last assistant message itself, which the model then
 * continues (a prefill, as llama-server does).
 *
 * @throws {TollgateError} `invalid_request` (400) for tool messages and tool calls, content
 *   parts other than text, or an unknown role.
 * @example
 * ```ts
 * chatHistoryFrom([{ role: 'system', content: 'Be brief' }, { role: 'user', content: 'Hi' }]);
 * // [{ type: 'system', text: 'Be brief' }, { type: 'user', text: 'Hi' }, { type: 'model', response: [] }]
 * ```
 */
export function chatHistoryFrom(messages: readonly Message[]): ChatHistoryItem[] {
  if (!Array.isArray(messages) || messages.length === 0) {
    throw invalid('"messages" must hold at least one message.', 'messages');
  }
  const history: ChatHistoryItem[] = messages.map((message, index): ChatHistoryItem => {
    const param = `messages[${index}]`;
    switch (message?.role) {
      case 'system':
      case 'developer':
        return { type: 'system', text: messageText(message, `${param}.content`) };
      case 'user':
        return { type: 'user', text: messageText(message, `${param}.content`) };
      case 'assistant': {
        if (message.tool_calls?.length) {
          throw invalid(
            'This backend does not do tool calling: send no assistant "tool_calls".',
            `${param}.tool_calls`,
          );
        }
        return { type: 'model', response: [messageText(message, `${param}.content`)] };
      }
      case 'tool':
      case 'function':
        throw invalid(
          `This backend does not do tool calling: a "${message.role}" message cannot be sent to it.`,
          `${param}.role`,
        );
      default:
        throw invalid(
          'A message "role" must be one of system, developer, user, assistant.',
          `${param}.role`,
        );
    }
  });
  if (history.at(-1)?.type !== 'model') history.push({ type: 'model', response: [] });
  return history;
}

/**
 * Refuses what a chat request may ask that this backend cannot do: tools (unless
 * `tool_choice` is `"none"`), legacy `functions`, a `response_format` other than text.
 *
 * @throws {TollgateError} `invalid_request` (400) naming the field.
 */
export function refuseUnsupportedChatFields(request: ChatCompletionRequest): void {
  const fields = request as Record<string, unknown>;
  const tools = fields.tools;
  if (Array.isArray(tools) && tools.length > 0 && fields.tool_choice !== 'none') {
    throw invalid(
      'This backend does not do tool calling: leave out "tools" (or set "tool_choice" to "none").',
      'tools',
    );
  }
  if (Array.isArray(fields.functions) && fields.functions.length > 0) {
    throw invalid('This backend does not do function calling: leave out "functions".', 'functions');
  }
  const format = fields.response_format;
  if (format !== undefined && format !== null) {
    const type = (format as { type?: unknown }).type;
    if (type !== 'text') {
      throw invalid(
        `This backend answers in plain text only: "response_format" type "${String(type)}" is not supported.`,
        'response_format',
      );
    }
  }
}
