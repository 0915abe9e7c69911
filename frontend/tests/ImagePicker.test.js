import { afterEach, describe, expect, it } from 'vitest'
import { mount } from '@vue/test-utils'
import ImagePicker from '../src/components/ImagePicker.vue'

// happy-dom has no ClipboardEvent with clipboardData: a plain Event carrying the same shape.
function pasteEvent(target, { text = '', files = [] }) {
  const event = new Event('paste', { bubbles: true, cancelable: true })
  event.clipboardData = {
    items: files.map((f) => ({ kind: 'file', type: f.type, getAsFile: () => f })),
    getData: (type) => (type === 'text/plain' ? text : ''),
  }
  target.dispatchEvent(event)
  return event
}

function dropEvent(target, { files = [], uriList = '' }) {
  const event = new Event('drop', { bubbles: true, cancelable: true })
  event.dataTransfer = { files, getData: (type) => (type === 'text/uri-list' ? uriList : '') }
  target.dispatchEvent(event)
}

let wrapper
afterEach(() => wrapper?.unmount())

describe('ImagePicker', () => {
  it('turns a pasted image anywhere into a file', () => {
    wrapper = mount(ImagePicker, { attachTo: document.body })
    const image = new File([new Uint8Array(4)], 'image.png', { type: 'image/png' })
    const event = pasteEvent(document.body, { files: [image] })
    expect(wrapper.emitted('file')[0][0]).toBe(image)
    expect(event.defaultPrevented).toBe(true)
  })

  it('checks a link pasted outside the field, but leaves one pasted in the field to be edited', () => {
    wrapper = mount(ImagePicker, { attachTo: document.body })
    pasteEvent(document.body, { text: 'https://example.org/a.jpg' })
    expect(wrapper.emitted('url')[0][0]).toBe('https://example.org/a.jpg')
    pasteEvent(wrapper.find('#url-input').element, { text: 'https://example.org/b.jpg' })
    expect(wrapper.emitted('url')).toHaveLength(1)
    pasteEvent(document.body, { text: 'just some words' })
    expect(wrapper.emitted('url')).toHaveLength(1)
  })

  it('stops listening for paste once it is gone', () => {
    wrapper = mount(ImagePicker, { attachTo: document.body })
    const emitted = wrapper.emitted()
    wrapper.unmount()
    pasteEvent(document.body, { text: 'https://example.org/a.jpg' })
    expect(emitted.url).toBeUndefined()
    wrapper = null
  })

  it('takes a dropped file, or an image dragged from another tab as its address', () => {
    wrapper = mount(ImagePicker)
    const zone = wrapper.find('.dropzone').element
    const file = new File([new Uint8Array(4)], 'a.jpg', { type: 'image/jpeg' })
    dropEvent(zone, { files: [file] })
    expect(wrapper.emitted('file')[0][0]).toBe(file)
    dropEvent(zone, { uriList: 'https://example.org/c.jpg\nhttps://example.org/d.jpg' })
    expect(wrapper.emitted('url')[0][0]).toBe('https://example.org/c.jpg')
  })

  it('submits a typed link trimmed, and not an empty one', async () => {
    wrapper = mount(ImagePicker)
    expect(wrapper.find('button[type="submit"]').attributes('disabled')).toBeDefined()
    await wrapper.find('#url-input').setValue('  https://example.org/e.jpg ')
    await wrapper.find('form').trigger('submit')
    expect(wrapper.emitted('url')[0][0]).toBe('https://example.org/e.jpg')
  })
})
